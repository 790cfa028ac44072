"""The FAQ knowledge base behind the chatbot: intent → answer template and example questions.

The file is the same JSONL the reply model is trained on (`data.faq`, read with `read_faq`), one object a line:

    {"intent": "check_balance", "answer": "The balance of {{Account Number}} is ...", "questions": ["..."],
     "slots": ["Account Number"],                      # optional: placeholders the user must provide
     "defaults": {"Website URL": "https://example.com"}}  # optional: placeholder values known in advance

Answers may hold Bitext-style placeholders `{{Name}}`. Each one is filled from, in order: the entry's `defaults`,
the knowledge base's `defaults` (company-wide values such as a support phone number), or a value the user gave.
A placeholder the user must give (a *slot*) is listed in `slots`; without that key, a placeholder is a slot when its
name ends in Number, ID or Code and it is not one of the company's own details (Customer Support ..., Company ...,
Website ..., Online ..., Live Chat ...), e.g. `{{Account Number}}`, `{{Order Number}}`, `{{Invoice Number}}`.
Any other placeholder without a value is written as its plain name, never with braces.

`KnowledgeBase.reload()` re-reads the file when its modification time or size changed, so edited answers go live
without restarting the app; a file that fails to parse is reported and the previous version keeps serving.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from nlp_suite.paths import resolve
from nlp_suite.tasks.reply import read_faq

log = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# Default slot rule for Bitext-style names (see the module docstring).
USER_SLOT = re.compile(r"^(?!(?:customer support|company|website|online|live chat)\b).*\b(?:number|id|code)$",
                       re.IGNORECASE)
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def placeholders(text: str) -> list[str]:
    """Names of the `{{...}}` placeholders in `text`, unique, in order of first appearance."""
    return list(dict.fromkeys(match.group(1) for match in PLACEHOLDER.finditer(text)))


def is_user_slot(name: str) -> bool:
    """Whether the default rule treats placeholder `name` as a value the user must give."""
    return bool(USER_SLOT.match(name.strip()))


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with each `{{Name}}` replaced by `values[Name]`, or by the plain name when there is no value."""
    return PLACEHOLDER.sub(lambda match: str(values.get(match.group(1), match.group(1))), template)


def words(text: str) -> list[str]:
    """Lower-case alphabetic words of `text` (numbers and punctuation dropped)."""
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class KBEntry:
    """One intent of the knowledge base."""

    intent: str
    answer: str
    questions: tuple[str, ...]
    slots: tuple[str, ...] = ()  # placeholders of the answer the user must provide
    defaults: Mapping[str, str] = field(default_factory=dict)  # placeholder values known in advance

    @property
    def topic(self) -> str:
        """Human-readable name of the intent: `check_balance` → "check balance"."""
        return re.sub(r"[_\-\s]+", " ", self.intent).strip()

    @property
    def placeholders(self) -> list[str]:
        """All placeholders of the answer."""
        return placeholders(self.answer)

    def missing(self, values: Mapping[str, str]) -> list[str]:
        """Slots that neither `values` nor the defaults fill, in the answer's order."""
        return [name for name in self.slots if name not in values and name not in self.defaults]

    def render(self, values: Mapping[str, str] | None = None) -> str:
        """The answer with placeholders filled from the defaults, then from `values` (the user's)."""
        return fill(self.answer, {**self.defaults, **(values or {})})


@dataclass(frozen=True)
class _Snapshot:
    entries: Mapping[str, KBEntry]
    vocabulary: frozenset[str]
    slot_names: tuple[str, ...]
    signature: tuple[int, int]


class KnowledgeBase:
    """Intents, answers and example questions of a FAQ JSONL file; safe to read from many threads."""

    def __init__(self, path: str | os.PathLike, defaults: Mapping[str, str] | None = None):
        self.path = resolve(path)
        self.defaults = dict(defaults or {})
        self._lock = threading.Lock()
        self._failed_signature: tuple[int, int] | None = None
        self.version = 0  # increases by one on every successful (re)load
        self._snapshot = self._load()

    @classmethod
    def from_entries(cls, path: str | os.PathLike, entries: Iterable[Mapping[str, Any]],
                     defaults: Mapping[str, str] | None = None) -> "KnowledgeBase":
        """Write `entries` as JSONL to `path` and load it (handy for tests and demos)."""
        target = resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(dict(entry), ensure_ascii=False) + "\n" for entry in entries),
                          encoding="utf-8")
        return cls(target, defaults)

    # ---------------------------------------------------------------- loading

    def _signature(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> _Snapshot:
        signature = self._signature()
        entries: dict[str, KBEntry] = {}
        for number, raw in enumerate(read_faq(self.path), start=1):
            entry = self._entry(raw, number)
            if entry.intent in entries:
                raise ValueError(f"{self.path}: intent {entry.intent!r} appears twice (line {number})")
            entries[entry.intent] = entry
        vocabulary = frozenset(word for entry in entries.values() for text in (*entry.questions, entry.topic)
                               for word in words(text))
        slot_names = tuple(dict.fromkeys(name for entry in entries.values() for name in entry.slots))
        self.version += 1
        return _Snapshot(MappingProxyType(entries), vocabulary, slot_names, signature)

    def _entry(self, raw: Mapping[str, Any], number: int) -> KBEntry:
        intent, answer, questions = raw["intent"], raw["answer"], raw["questions"]
        if not isinstance(intent, str) or not intent.strip():
            raise ValueError(f"{self.path}: entry {number}: intent must be a non-empty string")
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"{self.path}: intent {intent!r}: answer must be a non-empty string")
        if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
            raise ValueError(f"{self.path}: intent {intent!r}: questions must be a list of strings")
        defaults = {**self.defaults, **{str(k): str(v) for k, v in (raw.get("defaults") or {}).items()}}
        found = placeholders(answer)
        if "slots" in raw:
            slots = tuple(str(name) for name in raw["slots"] if str(name) in found)
        else:
            slots = tuple(name for name in found if is_user_slot(name) and name not in defaults)
        return KBEntry(intent=intent, answer=answer, questions=tuple(questions), slots=slots,
                       defaults=MappingProxyType(defaults))

    def reload(self, force: bool = False) -> bool:
        """Re-read the file if it changed since the last load (or `force`); True when new entries were loaded.

        A missing or malformed file is logged once per change and the previous entries stay in use.
        """
        with self._lock:
            try:
                signature = self._signature()
            except OSError as error:
                if self._failed_signature != (-1, -1):
                    log.warning("knowledge base %s unreadable (%s); keeping version %d", self.path, error,
                                self.version)
                    self._failed_signature = (-1, -1)
                return False
            if not force and signature in (self._snapshot.signature, self._failed_signature):
                return False
            try:
                self._snapshot = self._load()
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("knowledge base %s not reloaded (%s); keeping version %d", self.path, error, self.version)
                self._failed_signature = signature
                return False
            self._failed_signature = None
            log.info("knowledge base %s reloaded: %d intents (version %d)", self.path, len(self), self.version)
            return True

    # ---------------------------------------------------------------- reading

    @property
    def entries(self) -> Mapping[str, KBEntry]:
        """intent → entry (read-only view of the current version)."""
        return self._snapshot.entries

    @property
    def intents(self) -> list[str]:
        """Intent names in file order."""
        return list(self._snapshot.entries)

    @property
    def vocabulary(self) -> frozenset[str]:
        """Lower-case words of all example questions and topics (to tell in-domain text from gibberish)."""
        return self._snapshot.vocabulary

    @property
    def slot_names(self) -> tuple[str, ...]:
        """Every slot any answer asks the user for."""
        return self._snapshot.slot_names

    def get(self, intent: str | None) -> KBEntry | None:
        """The entry of `intent`, or None when the knowledge base does not have it."""
        return self._snapshot.entries.get(intent) if intent is not None else None

    def topic(self, intent: str) -> str:
        """Readable name of an intent, also for intents the knowledge base lacks."""
        entry = self.get(intent)
        return entry.topic if entry else re.sub(r"[_\-\s]+", " ", intent).strip()

    def __contains__(self, intent: object) -> bool:
        return intent in self._snapshot.entries

    def __len__(self) -> int:
        return len(self._snapshot.entries)

    def __repr__(self) -> str:
        return f"KnowledgeBase({str(self.path)!r}, intents={len(self)}, version={self.version})"
