"""The reply service: one user message in, one plain-text bot reply out, both logged to `chat_messages`.

Rules, in order, for each user message of a session:

1. **refusal**: empty/whitespace input or more than `max_input_chars` characters.
2. **slot value**: when the previous reply asked for a placeholder value (e.g. the account number), the message is
   read as that value and the pending answer is given with it filled in.
3. **handoff**: the user asks for a human (at any time), or says yes after the bot offered one; the session's
   `chat_sessions.handoff_requested` becomes True.
4. The intent model ranks the intents. When the message alone is not confident enough but shares words with the
   knowledge base, it is ranked again together with the session's last `context_turns` user messages (follow-ups
   such as "and how long does that take?").
5. **retrieval**, then **fallback**: top probability below `confidence_threshold`, or too few of the message's words
   occur anywhere in the knowledge base's questions (`min_vocabulary_share`; a small intent model is confidently
   wrong on gibberish). With a retrieval model (`nlp_suite.tasks.retrieval`, optional) the bot then looks for the
   best knowledge-base passage (every entry's answer, including entries without example questions, i.e. plain FAQ
   documents) and answers with it when its score reaches `retrieval_threshold` and enough of the message's words
   occur in the knowledge base (questions and answers). With `intent_prior_weight` w > 0 the top `RERANK_HITS`
   passages that reach the threshold are re-ranked by score + w * log P(passage's intent | message), P from the
   intent model (`nlp_suite.chat.selection`). Otherwise the fallback offers a human agent.
6. **clarify**: the top two intents are closer than `ambiguity_gap`; the bot names both topics and the next message
   picks one ("the first", "the second", or words of a topic).
7. **answer**: the intent's answer with placeholders filled from values the user gave earlier in the session
   ("my account number is 12345"); when a value is missing the bot asks for it (kind "clarify") and answers on the
   next turn.

Per-session state lives in memory, keyed by session id, with one lock per session (turns of one session are
serialised; different sessions run in parallel and never share state). A session unknown to this process (after a
restart, or evicted from the LRU) is rebuilt from its logged user messages. The service returns plain text and never
renders HTML: making user-supplied text inert is the UI's job.
"""
from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal, Sequence

from omegaconf import DictConfig
from sqlalchemy import select

from nlp_suite.chat.batching import MicroBatcher
from nlp_suite.chat.knowledge import KnowledgeBase, words
from nlp_suite.chat.log_writer import ChatLogWriter, LoggedTurn
from nlp_suite.chat.selection import RERANK_HITS, choose_passage
from nlp_suite.config import db_url
from nlp_suite.storage.models import ChatMessage
from nlp_suite.storage.session import session_scope
from nlp_suite.tasks.classification import TextClassifier
from nlp_suite.tasks.retrieval import Retriever
from nlp_suite.training import registry
from nlp_suite.training.checkpoint import CheckpointError

log = logging.getLogger(__name__)

ReplyKind = Literal["answer", "clarify", "fallback", "refusal", "handoff"]
KINDS: tuple[str, ...] = ("answer", "clarify", "fallback", "refusal", "handoff")

FALLBACK_TEXT = ("I'm not sure I understood that. Could you rephrase your question, "
                 "or would you like me to connect you to a human agent?")
REPHRASE_TEXT = "No problem. Could you rephrase your question? I'll do my best to help."
HANDOFF_TEXT = ("Okay, I'm connecting you to a human agent. Someone from our support team will pick up this "
                "conversation shortly.")
EMPTY_TEXT = "It looks like your message was empty. What can I help you with?"
TOO_LONG_TEXT = ("Sorry, that message is too long for me ({length:,} characters; the limit is {limit:,}). "
                 "Could you shorten it to the main question?")
UNKNOWN_INTENT_TEXT = ("I think your question is about {topic}, but I don't have an answer for that yet. "
                       "Would you like me to connect you to a human agent?")

# Words too common to tell whether a message is about anything the knowledge base covers.
STOPWORDS = frozenset(
    "a an the i i'm im me my mine we our you your it its it's is are was were be been am do does did done have has "
    "had can could would should will shall may might must to of in on at for from by with about as into and or but "
    "if so not no yes this that these those there here what which who whom how when where why please hi hello hey "
    "thanks thank ok okay just also any some".split()
)
# An explicit request for a person: "a human", "real person", "live agent", "talk to someone", "speak with an agent".
HUMAN = re.compile(
    r"\b(humans?|representative|operator|real person|live (?:agent|person)|human agent|customer service agent|"
    r"(?:talk|speak|chat) (?:to|with) (?:a |an |the |your )?(?:someone|somebody|person|agent|staff|people))\b",
    re.IGNORECASE)
# A reply to the hand-off offer counts as yes/no only when it is made of these words alone ("yes please", "no thanks").
YES_START = frozenset("yes yeah yep yup sure ok okay please y absolutely definitely connect go".split())
YES_WORDS = YES_START | frozenset("please thanks thank you do it that would be great nice i i'd like me connect ahead "
                                  "of course".split())
NO_START = frozenset("no nope nah n not".split())
NO_WORDS = NO_START | frozenset("thanks thank you not now it's i'm fine ok okay that's need".split())
FIRST = re.compile(r"\b(first|former|1st|one|1)\b", re.IGNORECASE)
SECOND = re.compile(r"\b(second|latter|2nd|two|2)\b", re.IGNORECASE)
NUMERIC_SLOT = re.compile(r"\b(number|no|num|nr|id|code)$", re.IGNORECASE)
VALUE_TOKEN = re.compile(r"#?([A-Za-z0-9][A-Za-z0-9\-_/]*\d[A-Za-z0-9\-_/]*|\d[A-Za-z0-9\-_/]*)")
MAX_SLOT_CHARS = 64
HISTORY_FOR_SLOTS = 50  # user messages read back to rebuild the slots of a session this process does not know


@dataclass
class BotReply:
    """What the bot answered to one user message (the bot message's row is `message_id`)."""

    session_id: str
    text: str  # plain text: the UI must escape it before rendering
    intent: str | None  # intent the reply is about (None for refusals and hand-offs)
    confidence: float | None  # model probability of that intent
    kb_entry: str | None  # knowledge-base intent whose answer was used or asked about
    kind: ReplyKind
    latency_ms: float
    message_id: int  # chat_messages.id of the bot message (pass it to `feedback`); 0 until `logged()`
    user_message_id: int = 0  # chat_messages.id of the user message
    candidates: list[tuple[str, float]] = field(default_factory=list)  # top intents with probabilities
    used_context: bool = False  # the intent came from the message together with earlier turns
    retrieval_score: float | None = None  # set when the answer came from the retriever (blended score)
    _ids: Future | None = field(default=None, repr=False, compare=False)  # the log writer's (user id, bot id)

    def logged(self, timeout: float | None = 60.0) -> int:
        """Wait until both messages are committed; fills and returns `message_id` (raises the write's error)."""
        if self._ids is not None and not self.message_id:
            self.user_message_id, self.message_id = self._ids.result(timeout=timeout)
        return self.message_id


@dataclass
class _Decision:
    kind: ReplyKind
    text: str
    intent: str | None = None
    confidence: float | None = None
    kb_entry: str | None = None
    candidates: list[tuple[str, float]] = field(default_factory=list)
    used_context: bool = False
    handoff: bool = False
    remember: bool = True  # add the user message to the session's context
    retrieval_score: float | None = None


def _only(text: str, start: frozenset[str], allowed: frozenset[str]) -> bool:
    """Whether `text` starts with a word of `start` and has no word outside `allowed`."""
    found = words(text)
    return bool(found) and found[0] in start and all(word in allowed for word in found)


class _SessionState:
    """Conversation state of one session; only touched while holding `lock`."""

    def __init__(self, context_turns: int):
        self.lock = threading.Lock()
        self.context: deque[str] = deque(maxlen=max(context_turns, 0))  # earlier user messages
        self.slots: dict[str, str] = {}  # placeholder values the user gave
        self.offered_handoff = False
        self.pending_slot: tuple[str, float | None, str] | None = None  # (intent, confidence, slot asked for)
        self.pending_choice: tuple[str, str] | None = None  # the two intents a clarifying question named


class ReplyService:
    """Answers chat messages with the intent model and the knowledge base; thread-safe."""

    def __init__(self, classifier: TextClassifier, kb: KnowledgeBase, db_url: str, *,
                 confidence_threshold: float = 0.5, ambiguity_gap: float = 0.1, context_turns: int = 3,
                 max_input_chars: int = 2000, min_vocabulary_share: float = 0.3, max_sessions: int = 10_000,
                 retriever: Retriever | None = None, retrieval_threshold: float | None = None,
                 intent_prior_weight: float = 0.0):
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
        if intent_prior_weight < 0:
            raise ValueError(f"intent_prior_weight must be >= 0, got {intent_prior_weight}")
        if ambiguity_gap < 0 or context_turns < 0 or max_input_chars < 1 or max_sessions < 1:
            raise ValueError("ambiguity_gap and context_turns must be >= 0, max_input_chars and max_sessions >= 1")
        self.classifier = classifier
        self.kb = kb
        self.db_url = db_url
        self.confidence_threshold = confidence_threshold
        self.ambiguity_gap = ambiguity_gap
        self.context_turns = context_turns
        self.max_input_chars = max_input_chars
        self.min_vocabulary_share = min_vocabulary_share
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, _SessionState] = OrderedDict()
        self._sessions_lock = threading.Lock()
        self.retriever = retriever
        self.retrieval_threshold = retrieval_threshold if retrieval_threshold is not None else (
            retriever.threshold if retriever is not None else None)
        self.intent_prior_weight = float(intent_prior_weight)  # 0 = the retriever's top passage, as before
        self._indexed_version = -1  # knowledge-base version the retriever's passages come from
        self._index_lock = threading.Lock()
        self._passage_intents: list[str] = []
        self._passage_vocabulary: frozenset[str] = frozenset()
        self._writer: ChatLogWriter | None = None
        self._writer_lock = threading.Lock()
        missing = sorted(set(classifier.labels) - set(kb.intents))
        if missing:
            log.warning("the reply model knows intents the knowledge base lacks: %s", missing)

    @classmethod
    def from_config(cls, cfg: DictConfig, device: str = "cpu") -> "ReplyService":
        """Load the active reply model from the registry (once) and the knowledge base `data.faq`.

        Thresholds: `ui.confidence_threshold` / `ui.ambiguity_gap` when set, else the values tuned on validation and
        stored with the model (model.json), else conf/task/reply's threshold and a 0.1 gap. The active `retrieval`
        model, when there is one, answers questions no intent matches (`ui.retrieval_threshold` overrides its
        validated threshold); without one the service works as before.
        Optional `ui` keys: micro_batch (most texts per shared forward pass; 1 = off), ambiguity_gap, context_turns, max_input_chars, min_vocabulary_share, retrieval_threshold,
        intent_prior_weight (w of the intent prior when choosing a retrieved passage; 0 = off),
        placeholder_defaults (placeholder name -> value, e.g. {"Customer Support Phone Number": "..."}).
        Raises RegistryError when no reply model is active.
        """
        url = db_url(cfg)
        with session_scope(url) as session:
            version, loaded = registry.load_active(session, "reply", device=device)
        ui = cfg.get("ui") or {}
        classifier = TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len)
        if int(ui.get("micro_batch", 64)) > 1:  # concurrent users share forward passes (see chat/batching.py)
            classifier = MicroBatcher(classifier, max_batch=int(ui.get("micro_batch", 64)))
        defaults = ui.get("placeholder_defaults") or {}
        kb = KnowledgeBase(cfg.data.faq, defaults={str(k): str(v) for k, v in dict(defaults).items()})
        tuned = getattr(loaded.task, "tuned", None) or {}  # chosen on validation at training time
        threshold = ui.get("confidence_threshold")
        if threshold is None:
            threshold = tuned.get("confidence_threshold", getattr(loaded.task, "confidence_threshold", 0.5))
        gap = ui.get("ambiguity_gap")
        if gap is None:
            gap = tuned.get("ambiguity_gap", 0.1)
        retriever = load_retriever(url, device)
        log.info("reply service: model %s (version %d), %d intents in %s; threshold %.2f, gap %.2f; retriever %s",
                 version.name, version.id, len(kb), kb.path, float(threshold), float(gap),
                 "on" if retriever else "off")
        return cls(classifier, kb, url, confidence_threshold=float(threshold), ambiguity_gap=float(gap),
                   context_turns=int(ui.get("context_turns", 3)), max_input_chars=int(ui.get("max_input_chars", 2000)),
                   min_vocabulary_share=float(ui.get("min_vocabulary_share", 0.3)), retriever=retriever,
                   retrieval_threshold=ui.get("retrieval_threshold"),
                   intent_prior_weight=float(ui.get("intent_prior_weight") or 0.0))

    # ------------------------------------------------------------------ public API

    def reply(self, session_id: str | None, text: str, *, wait_for_log: bool = True) -> BotReply:
        """Answer `text` in session `session_id` (None starts a new session); logs both messages.

        With `wait_for_log=False` it returns as soon as the answer is decided: the turn is committed by the log
        writer meanwhile and `BotReply.logged()` waits for it (a streaming UI shows the first words first).
        """
        started = time.perf_counter()
        session_id = self._session_id(session_id)
        text = "" if text is None else str(text)
        state = self._state(session_id)
        with state.lock:
            decision = self._decide(state, text)
            latency_ms = (time.perf_counter() - started) * 1000.0
            ids = self._log(session_id, text, decision, latency_ms)  # submitted under the lock: turns stay in order
            if decision.remember:
                state.context.append(text)
        reply = BotReply(session_id=session_id, text=decision.text, intent=decision.intent,
                         confidence=decision.confidence, kb_entry=decision.kb_entry, kind=decision.kind,
                         latency_ms=latency_ms, message_id=0, candidates=decision.candidates,
                         used_context=decision.used_context, retrieval_score=decision.retrieval_score, _ids=ids)
        if wait_for_log:
            reply.logged()
        return reply

    def feedback(self, message_id: int, value: int) -> None:
        """Store thumbs up (+1) or down (-1) on a bot message."""
        if value not in (1, -1) or isinstance(value, bool):
            raise ValueError(f"feedback must be +1 or -1, got {value!r}")
        with session_scope(self.db_url) as session:
            message = session.get(ChatMessage, int(message_id))
            if message is None:
                raise LookupError(f"no chat message with id {message_id}")
            if message.role != "bot":
                raise ValueError(f"feedback is for bot messages; message {message_id} is a {message.role} message")
            message.feedback = int(value)

    def new_session_id(self) -> str:
        """A fresh session id (uuid4 hex)."""
        return uuid.uuid4().hex

    # ------------------------------------------------------------------ sessions

    def _session_id(self, session_id: str | None) -> str:
        if session_id is None or session_id == "":
            return self.new_session_id()
        session_id = str(session_id)
        if len(session_id) > 64:
            raise ValueError("session_id must be at most 64 characters")
        return session_id

    def _state(self, session_id: str) -> _SessionState:
        with self._sessions_lock:
            state = self._sessions.get(session_id)
            if state is not None:
                self._sessions.move_to_end(session_id)
                return state
            state = _SessionState(self.context_turns)
            self._sessions[session_id] = state
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            # Hold the new state's lock until it is rebuilt, so a concurrent turn of the session waits for it.
            state.lock.acquire()
        try:
            self._restore(session_id, state)
        finally:
            state.lock.release()
        return state

    def _restore(self, session_id: str, state: _SessionState) -> None:
        """Rebuild context and slots of a session this process has not seen (restart, LRU eviction)."""
        with session_scope(self.db_url) as session:
            texts = session.scalars(
                select(ChatMessage.text).where(ChatMessage.session_id == session_id, ChatMessage.role == "user")
                .order_by(ChatMessage.id.desc()).limit(HISTORY_FOR_SLOTS)
            ).all()
        for text in reversed(texts):
            if text.strip() and len(text) <= self.max_input_chars:
                self._remember_slots(state, text)
                state.context.append(text)

    # ------------------------------------------------------------------ decisions

    def _decide(self, state: _SessionState, text: str) -> _Decision:
        self.kb.reload()
        if not text.strip():
            return _Decision("refusal", EMPTY_TEXT, remember=False)
        if len(text) > self.max_input_chars:
            return _Decision("refusal", TOO_LONG_TEXT.format(length=len(text), limit=self.max_input_chars),
                             remember=False)

        if state.pending_slot is not None:
            intent, confidence, slot = state.pending_slot
            state.pending_slot = None
            value = self._slot_value(slot, text, asked=True)
            if value is not None:
                state.slots[slot] = value
                return self._answer(state, intent, confidence,
                                    [(intent, confidence)] if confidence is not None else [])

        if HUMAN.search(text) or (state.offered_handoff and _only(text, YES_START, YES_WORDS)):
            state.offered_handoff = False
            state.pending_choice = None
            return _Decision("handoff", HANDOFF_TEXT, handoff=True)
        if state.offered_handoff and _only(text, NO_START, NO_WORDS):
            state.offered_handoff = False
            return _Decision("fallback", REPHRASE_TEXT)
        state.offered_handoff = False
        self._remember_slots(state, text)

        ranked = self._rank(text)
        share = self._vocabulary_share(text)
        used_context = False
        if ranked[0][1] < self.confidence_threshold and share > 0 and state.context:
            with_context = self._rank(" ".join([*state.context, text]))
            if with_context[0][1] >= self.confidence_threshold:
                ranked, used_context = with_context, True
        candidates = ranked[:2]

        if state.pending_choice is not None:
            choice = self._choose(text, *state.pending_choice)
            state.pending_choice = None
            if choice is not None:
                probability = dict(ranked).get(choice)
                return self._answer(state, choice, probability, candidates)

        intent, confidence = ranked[0]
        if confidence < self.confidence_threshold or (share < self.min_vocabulary_share and not used_context):
            retrieved = self._retrieve(state, text, candidates, ranked)
            if retrieved is not None:
                return retrieved
            state.offered_handoff = True
            return _Decision("fallback", FALLBACK_TEXT, intent=intent, confidence=confidence,
                             candidates=candidates, used_context=used_context)
        if len(ranked) > 1 and confidence - ranked[1][1] < self.ambiguity_gap:
            first, second = ranked[0][0], ranked[1][0]
            state.pending_choice = (first, second)
            text = (f"Just to be sure: is your question about {self.kb.topic(first)}, "
                    f"or about {self.kb.topic(second)}?")
            return _Decision("clarify", text, intent=intent, confidence=confidence, candidates=candidates,
                             used_context=used_context)
        return self._answer(state, intent, confidence, candidates, used_context)

    def _answer(self, state: _SessionState, intent: str, confidence: float | None,
                candidates: list[tuple[str, float]] | None = None, used_context: bool = False) -> _Decision:
        candidates = candidates or []
        entry = self.kb.get(intent)
        if entry is None:
            state.offered_handoff = True
            return _Decision("fallback", UNKNOWN_INTENT_TEXT.format(topic=self.kb.topic(intent)), intent=intent,
                             confidence=confidence, candidates=candidates, used_context=used_context)
        missing = entry.missing(state.slots)
        if missing:
            state.pending_slot = (intent, confidence, missing[0])
            return _Decision("clarify", f"I can help with {entry.topic}. What is your {missing[0].lower()}?",
                             intent=intent, confidence=confidence, kb_entry=intent, candidates=candidates,
                             used_context=used_context)
        return _Decision("answer", entry.render(state.slots), intent=intent, confidence=confidence,
                         kb_entry=intent, candidates=candidates, used_context=used_context)

    def _retrieve(self, state: _SessionState, text: str, candidates: list[tuple[str, float]],
                  ranked: Sequence[tuple[str, float]] = ()) -> _Decision | None:
        """The answer of the best-matching knowledge-base passage, when the retriever is sure enough; else None.
        `ranked` (every intent with its probability) feeds the intent prior."""
        if self.retriever is None or self.retrieval_threshold is None:
            return None
        self._index()
        found = [word for word in words(text) if word not in STOPWORDS] or words(text)
        known = sum(word in self._passage_vocabulary for word in found) / len(found) if found else 0.0
        if known < self.min_vocabulary_share:  # gibberish can still land close to some passage
            return None
        hits = self.retriever.search(text, k=RERANK_HITS if self.intent_prior_weight > 0 and ranked else 1)
        # The threshold is checked on the blended score (what it was validated on): the prior only reorders the
        # passages that pass it, so answering vs falling back is decided exactly as without the prior.
        best = choose_passage(hits, [self._passage_intents[hit.index] for hit in hits], dict(ranked),
                              self.intent_prior_weight, self.retrieval_threshold)
        if best is None:
            return None
        decision = self._answer(state, self._passage_intents[best.index], None, candidates)
        decision.retrieval_score = best.score
        return decision

    def _index(self) -> None:
        """(Re)index the knowledge base's answers for the retriever when the file changed."""
        with self._index_lock:
            if self._indexed_version == self.kb.version:
                return
            entries = list(self.kb.entries.values())
            self.retriever.index([entry.render() for entry in entries],
                                 corpus=[q for entry in entries for q in entry.questions])
            self._passage_intents = [entry.intent for entry in entries]
            self._passage_vocabulary = self.kb.vocabulary | frozenset(
                word for entry in entries for word in words(entry.render()))
            self._indexed_version = self.kb.version

    def _rank(self, text: str) -> list[tuple[str, float]]:
        """Intents by descending probability."""
        probabilities = self.classifier.predict_proba([text])[0]
        order = probabilities.argsort()[::-1]
        return [(self.classifier.labels[int(i)], float(probabilities[i])) for i in order]

    def _vocabulary_share(self, text: str) -> float:
        """Share of the message's content words that occur in the knowledge base's questions."""
        found = words(text)
        content = [word for word in found if word not in STOPWORDS] or found
        if not content:
            return 0.0
        vocabulary = self.kb.vocabulary
        return sum(word in vocabulary for word in content) / len(content)

    def _choose(self, text: str, first: str, second: str) -> str | None:
        """Which of two offered topics a reply to a clarifying question picks, if any."""
        said = set(words(text))
        hits = [len(said & (set(words(self.kb.topic(intent))) - STOPWORDS)) for intent in (first, second)]
        if hits[0] != hits[1]:
            return first if hits[0] > hits[1] else second
        if FIRST.search(text) and not SECOND.search(text):
            return first
        if SECOND.search(text) and not FIRST.search(text):
            return second
        return None

    # ------------------------------------------------------------------ slots

    def _remember_slots(self, state: _SessionState, text: str) -> None:
        """Keep every slot value stated in `text` ("my order number is 12345")."""
        for slot in self.kb.slot_names:
            value = self._slot_value(slot, text, asked=False)
            if value is not None:
                state.slots[slot] = value

    @staticmethod
    def _slot_value(slot: str, text: str, *, asked: bool) -> str | None:
        """The value of `slot` in `text`: after its name ("account number is 12345"), or, when the bot just asked
        for it, the first token with a digit (numeric slots) or the whole short message."""
        numeric = bool(NUMERIC_SLOT.search(slot.strip()))
        name = words(slot)
        if numeric and len(name) > 1:
            name = name[:-1]
        if name:
            lead = r"\b" + r"\s+".join(map(re.escape, name))
            if numeric:
                pattern = lead + r"(?:\s*(?:number|no\.?|num|nr|id|code|#))?\s*(?:is|was|=|:)?\s*[:#]?\s*(\S+)"
            else:
                pattern = lead + r"\s*(?:is|was|=|:)\s*([^\n,;!?]+)"
            for match in re.finditer(pattern, text, re.IGNORECASE):
                value = match.group(1).strip().strip(".,;:!?()'\"")
                if numeric and not VALUE_TOKEN.fullmatch(value):
                    continue
                if value:
                    return value.lstrip("#")[:MAX_SLOT_CHARS]
        if not asked:
            return None
        if numeric:
            token = VALUE_TOKEN.search(text)
            return token.group(1)[:MAX_SLOT_CHARS] if token else None
        stripped = text.strip().strip(".!?'\"")
        if stripped and len(stripped.split()) <= 6:
            return stripped[:MAX_SLOT_CHARS]
        return None

    # ------------------------------------------------------------------ storage

    def _log(self, session_id: str, text: str, decision: _Decision, latency_ms: float) -> Future:
        """Queue the user and bot messages for the log writer (which creates the session on its first message)."""
        stored = text if len(text) <= 10 * self.max_input_chars else text[: 10 * self.max_input_chars]
        top = decision.candidates[0] if decision.candidates else (None, None)
        return self._log_writer().submit(LoggedTurn(
            session_id=session_id, user_text=stored, bot_text=decision.text, top_intent=top[0],
            top_confidence=top[1], intent=decision.intent, confidence=decision.confidence,
            kb_entry=decision.kb_entry, latency_ms=latency_ms, handoff=decision.handoff))

    def _log_writer(self) -> ChatLogWriter:
        """The one writer thread of this service's conversation log (started on first use)."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = ChatLogWriter(self.db_url)
            return self._writer

    def close(self) -> None:
        """Write the turns still queued and stop the background threads (the log writer, the micro-batcher)."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if isinstance(self.classifier, MicroBatcher):
            self.classifier.close()


def load_retriever(url: str, device: str = "cpu") -> Retriever | None:
    """The active retrieval model as a `Retriever`, or None when there is none (or it cannot be loaded)."""
    with session_scope(url) as session:
        version = registry.active_version(session, "retrieval")
        if version is None:
            return None
        try:
            loaded = registry.load_version(version, device=device)
        except (CheckpointError, OSError, ValueError) as error:
            log.warning("retrieval model %s not loaded (%s); answering without it", version.name, error)
            return None
    return Retriever.from_loaded(loaded)
