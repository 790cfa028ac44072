"""The conversation log's single writer: concurrent turns all stored, in order, grouped; a bad turn fails alone."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from nlp_suite.chat.log_writer import ChatLogWriter, LoggedTurn
from nlp_suite.storage import migrate
from nlp_suite.storage.models import ChatMessage, ChatSession
from nlp_suite.storage.session import session_scope


@pytest.fixture()
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    migrate.upgrade(url)
    return url


def test_concurrent_sessions_are_all_stored_in_order_with_fewer_commits(url):
    writer = ChatLogWriter(url)
    sessions, turns_each = 16, 20
    start = threading.Barrier(sessions)
    futures: dict[str, list] = {}

    def chat(number: int) -> None:
        session_id = f"s{number:02d}"
        start.wait(timeout=30)
        futures[session_id] = [writer.submit(LoggedTurn(session_id, f"question {i}", f"answer {i}", kb_entry="faq",
                                                        handoff=i == 3, latency_ms=1.5))
                               for i in range(turns_each)]

    threads = [threading.Thread(target=chat, args=(n,)) for n in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ids = {s: [f.result(timeout=30) for f in found] for s, found in futures.items()}
    writer.close()

    assert writer.turns == sessions * turns_each and writer.commits < writer.turns  # grouped commits
    with session_scope(url) as session:
        assert session.scalar(select(ChatSession).where(ChatSession.id == "s05")).handoff_requested
        for session_id, pairs in ids.items():
            rows = session.scalars(select(ChatMessage).where(ChatMessage.session_id == session_id)
                                   .order_by(ChatMessage.id)).all()
            assert [(r.role, r.text) for r in rows] == [pair for i in range(turns_each)
                                                        for pair in (("user", f"question {i}"), ("bot", f"answer {i}"))]
            assert [r.id for r in rows] == [i for pair in pairs for i in pair]  # the futures name the stored rows
            assert rows[1].retrieved_ids == ["faq"] and rows[1].latency_ms == 1.5


def test_a_turn_that_cannot_be_stored_fails_alone_and_close_flushes_the_queue(url):
    writer = ChatLogWriter(url)
    release = threading.Event()
    writer.submit(_Blocking(release))  # holds the worker, so the next three turns are written as one batch
    good = writer.submit(LoggedTurn("a", "hello", "hi"))
    bad = writer.submit(LoggedTurn("b", None, "hi"))  # type: ignore[arg-type] - NULL text violates NOT NULL
    later = writer.submit(LoggedTurn("a", "and then?", "then this"))
    release.set()
    writer.close()
    assert good.result(timeout=10) < later.result(timeout=10)
    with pytest.raises(Exception, match="NOT NULL"):
        bad.result(timeout=10)
    with session_scope(url) as session:
        assert session.scalars(select(ChatMessage.text).order_by(ChatMessage.id)).all() == [
            "wait", "done", "hello", "hi", "and then?", "then this"]
    assert writer.commits == 3  # the blocker, then the failed batch retried turn by turn (its two good turns)
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(LoggedTurn("a", "x", "y"))


class _Blocking(LoggedTurn):
    """A turn whose write waits for an event: lets a test queue several turns behind it."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__("blocker", "wait", "done")
        self.event = event

    def __getattribute__(self, name):
        if name == "session_id":  # read first thing in the write
            object.__getattribute__(self, "event").wait(timeout=10)
        return object.__getattribute__(self, name)
