"""Validated, batched, idempotent ingestion of a documents file into SQL; bad rows go to quarantine, never lost."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from rich.table import Table
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from nlp_suite.data.readers import Preset, RawRow, iter_raw_rows, resolve_format
from nlp_suite.monitoring.entities import Watchlist
from nlp_suite.monitoring.topics import TOPIC_KIND, TopicRules
from nlp_suite.storage.base import utcnow
from nlp_suite.storage.models import Document, DocumentEntity, Quarantine
from nlp_suite.storage.session import insert_ignoring_conflicts, session_factory

logger = logging.getLogger(__name__)

MAX_ID_CHARS = 256  # documents.external_id is String(256)
MAX_SOURCE_CHARS = 64  # documents.source is String(64)

# Pydantic error type -> reason category shown in summaries.
CATEGORIES = {
    "missing_id": "missing id",
    "missing_text": "missing text",
    "missing_date": "missing date",
    "unparsable_date": "unparsable date",
    "too_long": "too long",
}
DUPLICATE_ID = "duplicate id"
INVALID_VALUE = "invalid value"


def content_hash(text: str) -> str:
    """sha256 hex of the text with whitespace runs collapsed, so re-wrapped copies hash alike."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 string, datetime or date -> aware UTC datetime (naive means UTC); ValueError otherwise."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip())  # 3.11+: accepts 'Z', offsets and date-only strings
    else:
        raise ValueError(f"unsupported type {type(value).__name__}")
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class DocumentRow(BaseModel):
    """One valid document; pass `context={"max_text_chars": n}` to validate."""

    external_id: str
    text: str
    published_at: datetime

    @field_validator("external_id", mode="before")
    @classmethod
    def _check_id(cls, value: Any) -> str:
        if _blank(value):
            raise PydanticCustomError("missing_id", "is empty")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise PydanticCustomError("invalid", "expected a string or integer id, found {kind}",
                                      {"kind": type(value).__name__})
        value = str(value).strip()
        if len(value) > MAX_ID_CHARS:
            raise PydanticCustomError("too_long", "{n} characters, more than the limit of {limit}",
                                      {"n": len(value), "limit": MAX_ID_CHARS})
        return value

    @field_validator("text", mode="before")
    @classmethod
    def _check_text(cls, value: Any, info: ValidationInfo) -> str:
        if _blank(value):
            raise PydanticCustomError("missing_text", "is empty")
        if not isinstance(value, str):
            raise PydanticCustomError("invalid", "expected text, found {kind}", {"kind": type(value).__name__})
        value = value.strip()
        limit = (info.context or {}).get("max_text_chars")
        if limit is not None and len(value) > limit:
            raise PydanticCustomError("too_long", "{n} characters, more than the limit of {limit}",
                                      {"n": len(value), "limit": limit})
        if "\x00" in value:  # PostgreSQL text cannot hold NUL
            raise PydanticCustomError("invalid", "contains NUL characters")
        return value

    @field_validator("published_at", mode="before")
    @classmethod
    def _check_date(cls, value: Any) -> datetime:
        if _blank(value):
            raise PydanticCustomError("missing_date", "is empty")
        try:
            return parse_timestamp(value)
        except (ValueError, OverflowError):
            raise PydanticCustomError("unparsable_date", "cannot parse {value} as a date",
                                      {"value": repr(value)[:80]}) from None


@dataclass(frozen=True)
class CheckedRow:
    """A row after validation: either `document` is set, or `category` and `reason` say why not."""

    line: int
    payload: dict[str, Any]
    document: DocumentRow | None = None
    category: str | None = None
    reason: str | None = None


def _rejection(error: ValidationError) -> tuple[str, str]:
    """(category of the first problem, every problem as "field 'x': message")."""
    problems = error.errors(include_url=False)
    category = CATEGORIES.get(problems[0]["type"], INVALID_VALUE)
    return category, "; ".join(f"field {'.'.join(map(str, p['loc']))!r}: {p['msg']}" for p in problems)


def check_rows(path: str | Path, *, format: str | None = None, max_text_chars: int = 5000) -> Iterator[CheckedRow]:
    """Read and validate every row (no database); ReadError is raised before the first row for unreadable files."""
    rows = iter_raw_rows(path, format)
    _, preset = resolve_format(path, format)
    return check_raw_rows(rows, preset, max_text_chars)


def check_raw_rows(rows: Iterable[RawRow], preset: Preset, max_text_chars: int = 5000) -> Iterator[CheckedRow]:
    """Validate rows from any reader (file, replay, feed); ids repeated within `rows` are rejected."""
    first_seen: dict[str, int] = {}  # only valid rows claim an id, so a bad first copy does not block a good one
    for raw in rows:
        if raw.error is not None:
            yield CheckedRow(raw.line, raw.payload, category=raw.category, reason=f"row {raw.line}: {raw.error}")
            continue
        try:
            document = DocumentRow.model_validate(preset.to_fields(raw.payload),
                                                  context={"max_text_chars": max_text_chars})
        except ValidationError as error:
            category, reason = _rejection(error)
            yield CheckedRow(raw.line, raw.payload, category=category, reason=f"row {raw.line}: {reason}")
            continue
        first = first_seen.setdefault(document.external_id, raw.line)
        if first != raw.line:
            reason = f"row {raw.line}: duplicate external_id {document.external_id!r} (first at row {first})"
            yield CheckedRow(raw.line, raw.payload, category=DUPLICATE_ID, reason=reason)
            continue
        yield CheckedRow(raw.line, raw.payload, document=document)


@dataclass
class IngestSummary:
    """What one ingest run did; read == stored + duplicates + quarantined always holds."""

    read: int = 0
    stored: int = 0
    duplicates: int = 0  # valid rows whose (source, external_id) was already stored
    quarantined: int = 0  # rows rejected in this run (including ones already in quarantine from earlier runs)
    reasons: dict[str, int] = field(default_factory=dict)  # reason category -> rejected rows
    quarantine_added: int = 0  # new rows written to the quarantine table (0 on a re-run)
    batches: int = 0
    source: str = ""
    path: str = ""
    pending: int | None = None  # replay sources: valid rows not yet due on the replay clock
    clock: str | None = None  # replay sources: publication time the replay clock has reached ("end" = all due)

    def as_table(self) -> Table:
        """The summary as a two-column rich table for the CLI."""
        table = Table(title=f"Ingest {Path(self.path).name} -> {self.source}" if self.path else "Ingest")
        table.add_column("metric")
        table.add_column("rows", justify="right")
        for label, value in (("read", self.read), ("stored", self.stored), ("duplicates", self.duplicates),
                             ("quarantined", self.quarantined), ("  new in quarantine", self.quarantine_added)):
            table.add_row(label, f"{value:,}")
        for category, count in sorted(self.reasons.items()):
            table.add_row(f"  {category}", f"{count:,}")
        if self.pending is not None:
            table.add_row("pending (replay)", f"{self.pending:,}")
            table.add_row("replay clock", str(self.clock))
        return table


def _escape(value: Any) -> Any:
    """Undecodable bytes (surrogate escapes) as visible '\\xff' text, recursively, so the payload is valid JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_escape(key): _escape(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape(item) for item in value]
    return value


def payload_json(payload: dict[str, Any]) -> str:
    """The raw payload as JSON text for quarantine.raw_payload."""
    return json.dumps(_escape(payload), ensure_ascii=False, default=str)


@dataclass
class _Batch:
    documents: list[DocumentRow] = field(default_factory=list)
    rejected: list[CheckedRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.documents) + len(self.rejected)


def _write_batch(session: Session, batch: _Batch, source: str, file_name: str,
                 watchlist: Watchlist | None, topics: TopicRules | None) -> tuple[int, int]:
    """Insert one batch's documents, entity links and quarantine rows; returns (stored, quarantine rows added)."""
    ids = [document.external_id for document in batch.documents]
    existing = set(session.scalars(select(Document.external_id).where(
        Document.source == source, Document.external_id.in_(ids)))) if ids else set()
    now = utcnow()
    new_rows = [{"source": source, "external_id": d.external_id, "text": d.text, "published_at": d.published_at,
                 "content_hash": content_hash(d.text), "ingested_at": now}
                for d in batch.documents if d.external_id not in existing]
    stored = insert_ignoring_conflicts(session, Document, new_rows, ["source", "external_id"])
    if new_rows and ((watchlist is not None and len(watchlist)) or topics is not None):
        _link_entities(session, source, new_rows, watchlist, topics)
    added = _quarantine(session, batch.rejected, source, file_name)
    return stored, added


def _link_entities(session: Session, source: str, new_rows: list[dict[str, Any]], watchlist: Watchlist | None,
                   topics: TopicRules | None) -> None:
    """document_entities rows (watched entities and the coarse topic) for the documents this batch stored."""
    found = session.execute(select(Document.external_id, Document.id).where(
        Document.source == source, Document.external_id.in_([row["external_id"] for row in new_rows])))
    id_of = {external_id: document_id for external_id, document_id in found}
    links = []
    for row in new_rows:
        document_id = id_of[row["external_id"]]
        if watchlist is not None:
            links += [{"document_id": document_id, "entity": name, "kind": watchlist.kind_of(name)}
                      for name in watchlist.match_entities(row["text"])]
        if topics is not None:
            links.append({"document_id": document_id, "entity": topics.classify(row["text"]), "kind": TOPIC_KIND})
    insert_ignoring_conflicts(session, DocumentEntity, links, ["document_id", "entity"])


def _quarantine(session: Session, rejected: list[CheckedRow], source: str, file_name: str) -> int:
    """Add quarantine rows not already there as (source, location, reason); returns how many were added."""
    if not rejected:
        return 0
    rows = [{"source": source, "location": f"{file_name}:row {row.line}", "raw_payload": payload_json(row.payload),
             "reason": row.reason} for row in rejected]
    keys = [(row["location"], row["reason"]) for row in rows]
    known = set(session.execute(select(Quarantine.location, Quarantine.reason).where(
        Quarantine.source == source, tuple_(Quarantine.location, Quarantine.reason).in_(keys))).tuples())
    fresh = [row for row in rows if (row["location"], row["reason"]) not in known]
    if fresh:
        session.execute(Quarantine.__table__.insert(), [{**row, "created_at": utcnow()} for row in fresh])
    return len(fresh)


def ingest_file(url: str, path: str | Path, source: str, *, format: str | None = None, max_text_chars: int = 5000,
                batch_size: int = 500, watchlist: Watchlist | None = None,
                topics: TopicRules | None = None) -> IngestSummary:
    """Validate and store a documents file; one transaction per batch, so a re-run after a crash completes it."""
    path = Path(path)
    _check_source(source, batch_size)
    rows = check_rows(path, format=format, max_text_chars=max_text_chars)  # ReadError here: nothing written yet
    summary = ingest_checked(url, rows, source, path.name, batch_size=batch_size, watchlist=watchlist, topics=topics)
    summary.path = str(path)
    return summary


def _check_source(source: str, batch_size: int) -> None:
    if not source or len(source) > MAX_SOURCE_CHARS:
        raise ValueError(f"source must be 1 to {MAX_SOURCE_CHARS} characters, got {source!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")


def ingest_checked(url: str, rows: Iterable[CheckedRow], source: str, location: str, *, batch_size: int = 500,
                   watchlist: Watchlist | None = None, topics: TopicRules | None = None) -> IngestSummary:
    """Store validated rows from any source in batches; `location` names where they came from in quarantine."""
    _check_source(source, batch_size)
    summary = IngestSummary(source=source, path=location)
    factory = session_factory(url)
    batch = _Batch()

    def flush() -> None:
        with factory.begin() as session:
            stored, added = _write_batch(session, batch, source, location, watchlist, topics)
        summary.stored += stored
        summary.duplicates += len(batch.documents) - stored
        summary.quarantine_added += added
        summary.batches += 1
        logger.info("ingest %s -> %s: batch %d committed (%d rows read, %d stored, %d duplicates, %d quarantined)",
                    location, source, summary.batches, summary.read, summary.stored, summary.duplicates,
                    summary.quarantined)
        batch.documents.clear()
        batch.rejected.clear()

    for row in rows:
        summary.read += 1
        if row.document is not None:
            batch.documents.append(row.document)
        else:
            batch.rejected.append(row)
            summary.quarantined += 1
            summary.reasons[row.category or INVALID_VALUE] = summary.reasons.get(row.category or INVALID_VALUE, 0) + 1
        if len(batch) >= batch_size:
            flush()
    if len(batch):
        flush()
    return summary
