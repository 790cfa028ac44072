"""The conversation log's single writer: chat turns from every session, written by one thread, many per commit.

Why one writer: SQLite lets one connection write at a time, and a second writer does not queue but sleeps in
SQLite's busy handler (1, 2, 5, 10, ... ms back-off), so 16 users whose turns were each committed by their own
request thread spent tens of milliseconds of their reply latency asleep behind each other. One thread that takes
every turn waiting in its inbox and commits them together (group commit) never contends, and a burst of turns costs
one transaction instead of one each. On PostgreSQL it saves the per-turn round trips and commits just the same.

Turns of one session arrive in the order they were decided (the service submits under the session's lock) and are
written in that order, so message ids grow with the conversation. A failed batch is retried turn by turn, so one
bad turn cannot lose the others; its caller gets the error.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from nlp_suite.chat.batching import take_batch
from nlp_suite.storage.models import ChatMessage, ChatSession
from nlp_suite.storage.session import insert_ignoring_conflicts, session_scope

log = logging.getLogger(__name__)


@dataclass
class LoggedTurn:
    """One user message and the bot's answer to it, as they go into `chat_messages`."""

    session_id: str
    user_text: str
    bot_text: str
    top_intent: str | None = None  # the model's first choice for the user message
    top_confidence: float | None = None
    intent: str | None = None  # what the bot answered about
    confidence: float | None = None
    kb_entry: str | None = None
    latency_ms: float = 0.0
    handoff: bool = False  # the turn asked for a human: flag the session
    ids: Future = field(default_factory=Future)  # -> (user message id, bot message id) once committed


class ChatLogWriter:
    """Background writer of `LoggedTurn`s (thread-safe `submit`); `close()` flushes what is queued."""

    def __init__(self, db_url: str, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.db_url, self.max_batch = db_url, max_batch
        self.commits = self.turns = 0  # counters for logs and tests
        self._inbox: queue.Queue = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="chat-log-writer", daemon=True)
        self._worker.start()

    def submit(self, turn: LoggedTurn) -> Future:
        """Queue `turn`; the returned future gives (user id, bot id) after its commit, or the write's error."""
        if self._closed:
            raise RuntimeError("the chat log writer is closed")
        self._inbox.put(turn)
        return turn.ids

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._inbox.put(None)
        self._worker.join(timeout=timeout)

    def _run(self) -> None:
        while (batch := take_batch(self._inbox, self.max_batch)) is not None:
            try:
                ids = self._write(batch)
            except Exception:  # noqa: BLE001 - retried turn by turn below, so one bad turn loses only itself
                log.warning("chat log: a batch of %d turns failed; writing them one by one", len(batch), exc_info=True)
                for turn in batch:
                    try:
                        (pair,) = self._write([turn])
                    except Exception as error:  # noqa: BLE001 - the caller gets it
                        log.exception("chat log: turn of session %s not stored", turn.session_id)
                        turn.ids.set_exception(error)
                    else:
                        turn.ids.set_result(pair)
                continue
            for turn, pair in zip(batch, ids):
                turn.ids.set_result(pair)

    def _write(self, batch: list[LoggedTurn]) -> list[tuple[int, int]]:
        """One transaction: sessions (created on first use), hand-off flags, then user and bot messages in order."""
        with session_scope(self.db_url) as session:
            new_sessions = [{"id": s} for s in dict.fromkeys(turn.session_id for turn in batch)]
            insert_ignoring_conflicts(session, ChatSession, new_sessions, ["id"])
            for session_id in dict.fromkeys(t.session_id for t in batch if t.handoff):
                session.get(ChatSession, session_id).handoff_requested = True
            messages = []
            for turn in batch:
                user = ChatMessage(session_id=turn.session_id, role="user", text=turn.user_text,
                                   intent=turn.top_intent, confidence=turn.top_confidence)
                bot = ChatMessage(session_id=turn.session_id, role="bot", text=turn.bot_text, intent=turn.intent,
                                  confidence=turn.confidence, retrieved_ids=[turn.kb_entry] if turn.kb_entry else [],
                                  latency_ms=round(turn.latency_ms, 3))
                messages.append((user, bot))
            session.add_all([message for pair in messages for message in pair])
            session.flush()
            result = [(user.id, bot.id) for user, bot in messages]
        self.commits, self.turns = self.commits + 1, self.turns + len(batch)
        return result
