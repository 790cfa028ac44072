"""Document sources beyond one file: a drop folder, a timestamped file replayed as a stream, and RSS/Atom feeds.

Every source turns its input into validated rows and hands them to `ingest_checked`, so validation, dedup
per (source, external_id) and quarantine work the same everywhere. What a source must remember between runs
(files already ingested, the replay clock, a feed's ETag) lives in a small JSON file per source under
`state_dir`, written atomically *after* the rows are committed: a crash in between only means some rows are
offered again, and the database's uniqueness turns them into counted duplicates, never double rows.
"""
from __future__ import annotations

import bisect
import calendar
import functools
import html
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import feedparser
import httpx
from sqlalchemy import select

from nlp_suite.data.ingest import (CheckedRow, IngestSummary, check_raw_rows, check_rows, ingest_checked,
                                   ingest_file, payload_json)
from nlp_suite.data.readers import EXTENSIONS, PRESETS, RawRow, ReadError, _hash_id
from nlp_suite.monitoring.entities import Watchlist
from nlp_suite.monitoring.topics import TopicRules
from nlp_suite.storage.base import utcnow
from nlp_suite.storage.models import Quarantine
from nlp_suite.storage.session import session_factory

logger = logging.getLogger(__name__)

SOURCE_TYPES = ("file", "folder", "replay", "rss")
UNREADABLE_FILE = "unreadable file"


@dataclass
class IngestOptions:
    """Settings every source passes on to ingestion."""

    state_dir: Path  # where sources keep their JSON state between runs
    max_text_chars: int = 5000
    batch_size: int = 500
    watchlist: Watchlist | None = None
    topics: TopicRules | None = None


@dataclass
class SourceState:
    """A source's JSON state file; `save` is atomic (temp file + rename)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path, source: str) -> SourceState:
        """The saved state of `source`, or an empty one (a corrupt file is set aside, not trusted)."""
        path = Path(state_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', source)}.json"
        if not path.exists():
            return cls(path)
        try:
            return cls(path, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            logger.warning("state file %s is unreadable (%s); starting that source afresh", path, error)
            path.replace(path.with_suffix(".corrupt"))
            return cls(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)


def ingest_source(url: str, spec: Mapping[str, Any], options: IngestOptions, *,
                  now: datetime | None = None) -> IngestSummary:
    """Ingest whatever is new from one configured source (`spec["type"]`: file, folder, replay or rss)."""
    kind = spec.get("type", "file")
    source = spec.get("source")
    if not source:
        raise ValueError(f"source spec {dict(spec)} has no 'source' name")
    if kind == "file":
        return ingest_file(url, spec["path"], source, format=spec.get("format"),
                           max_text_chars=options.max_text_chars, batch_size=options.batch_size,
                           watchlist=options.watchlist, topics=options.topics)
    if kind == "folder":
        return ingest_folder(url, spec, options)
    if kind == "replay":
        return ingest_replay(url, spec, options, now=now or utcnow())
    if kind == "rss":
        return ingest_feed(url, spec, options, now=now or utcnow())
    raise ValueError(f"source {source!r}: unknown type {kind!r}; expected one of {list(SOURCE_TYPES)}")


def _ingest(url: str, rows: Iterator[CheckedRow] | list[CheckedRow], source: str, location: str,
            options: IngestOptions) -> IngestSummary:
    return ingest_checked(url, rows, source, location, batch_size=options.batch_size,
                          watchlist=options.watchlist, topics=options.topics)


# ----------------------------------------------------------------------------------------------- drop folder
def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def ingest_folder(url: str, spec: Mapping[str, Any], options: IngestOptions) -> IngestSummary:
    """Ingest every new or changed CSV/JSONL/Parquet file of a drop folder, in name order."""
    folder, source = Path(spec["path"]), spec["source"]
    if not folder.is_dir():
        raise ReadError(folder, "drop folder does not exist or is not a directory")
    state = SourceState.load(options.state_dir, source)
    done: dict[str, str] = state.data.setdefault("files", {})
    total = IngestSummary(source=source, path=str(folder))
    pattern = spec.get("pattern", "*")
    for path in sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in EXTENSIONS):
        fingerprint = _fingerprint(path)
        if done.get(path.name) == fingerprint:
            continue  # already ingested in full; a changed file is offered again (dedup keeps rows single)
        try:
            summary = ingest_file(url, path, source, format=spec.get("format"),
                                  max_text_chars=options.max_text_chars, batch_size=options.batch_size,
                                  watchlist=options.watchlist, topics=options.topics)
        except ReadError as error:
            logger.error("%s", error)
            summary = _quarantine_file(url, source, path, error)
        _add(total, summary)
        done[path.name] = fingerprint
        state.save()
    return total


def _quarantine_file(url: str, source: str, path: Path, error: ReadError) -> IngestSummary:
    """A whole unreadable file becomes one quarantine row (once per file version), so the folder goes on."""
    location, reason = f"{path.name}:file", f"{UNREADABLE_FILE}: {error.why}"
    with session_factory(url).begin() as session:
        known = session.scalar(select(Quarantine.id).where(
            Quarantine.source == source, Quarantine.location == location, Quarantine.reason == reason).limit(1))
        if known is None:
            session.add(Quarantine(source=source, location=location, reason=reason,
                                   raw_payload=payload_json({"file": str(path), "error": error.why})))
    return IngestSummary(read=1, quarantined=1, reasons={UNREADABLE_FILE: 1}, quarantine_added=int(known is None),
                         source=source, path=str(path))


def _add(total: IngestSummary, part: IngestSummary) -> None:
    for name in ("read", "stored", "duplicates", "quarantined", "quarantine_added", "batches"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    for category, count in part.reasons.items():
        total.reasons[category] = total.reasons.get(category, 0) + count


# ---------------------------------------------------------------------------------------------------- replay
@dataclass(frozen=True)
class ReplayTimeline:
    """A file's valid rows in publication order, and its invalid rows (quarantined on the first step)."""

    rows: list[CheckedRow]
    published: list[datetime]  # rows[i].document.published_at, for bisecting the replay clock
    rejected: list[CheckedRow]

    @classmethod
    def read(cls, path: str | Path, format: str | None, max_text_chars: int) -> ReplayTimeline:
        """The file's timeline, parsed once per file version (each replay step and wait check asks again)."""
        path = Path(path).resolve()
        return cls._read(path, _fingerprint(path), format, max_text_chars)

    @classmethod
    @functools.lru_cache(maxsize=8)
    def _read(cls, path: Path, fingerprint: str, format: str | None, max_text_chars: int) -> ReplayTimeline:
        good, bad = [], []
        for row in check_rows(path, format=format, max_text_chars=max_text_chars):
            (good if row.document is not None else bad).append(row)
        good.sort(key=lambda row: (row.document.published_at, row.line))  # stable: file order within a timestamp
        return cls(good, [row.document.published_at for row in good], bad)


def replay_cutoff(state: Mapping[str, Any], now: datetime, speed: float | None) -> datetime | None:
    """Publication time the replay clock has reached (None = everything is due: speed 0/null = as fast as possible)."""
    if not speed:
        return None
    started = datetime.fromisoformat(state["started_wall"])
    first = datetime.fromisoformat(state["clock_start"])
    return first + timedelta(seconds=(now - started).total_seconds() * float(speed))


def ingest_replay(url: str, spec: Mapping[str, Any], options: IngestOptions, *, now: datetime) -> IngestSummary:
    """Ingest the rows of a timestamped file whose publication time the replay clock has reached."""
    path, source, speed = Path(spec["path"]), spec["source"], spec.get("speed")
    if speed is not None and float(speed) < 0:
        raise ValueError(f"replay source {source!r}: speed must be >= 0 (0 or null = as fast as possible)")
    timeline = ReplayTimeline.read(path, spec.get("format"), options.max_text_chars)
    state = SourceState.load(options.state_dir, source)
    fingerprint = f"{path.resolve()}|{_fingerprint(path)}"
    if state.data.get("fingerprint") != fingerprint or not timeline.rows:
        start = spec.get("start")  # replay from this publication date instead of the file's first row
        clock_start = parse_start(start) if start else (timeline.published[0] if timeline.rows else now)
        state.data = {"fingerprint": fingerprint, "started_wall": now.isoformat(),
                      "clock_start": clock_start.isoformat(), "emitted": bisect.bisect_left(timeline.published,
                                                                                            clock_start),
                      "speed": speed}
    elif state.data.get("speed") != speed:  # re-anchor the clock where it stands, so no row is skipped or repeated
        state.data.update(started_wall=now.isoformat(), speed=speed,
                          clock_start=(replay_cutoff(state.data, now, state.data.get("speed")) or now).isoformat())
    cutoff = replay_cutoff(state.data, now, speed)
    emitted = int(state.data["emitted"])
    due = len(timeline.rows) if cutoff is None else bisect.bisect_right(timeline.published, cutoff)
    rows = (timeline.rejected if emitted == 0 else []) + timeline.rows[emitted:max(due, emitted)]
    summary = _ingest(url, rows, source, path.name, options)
    state.data["emitted"] = max(due, emitted)
    state.save()
    summary.path = str(path)
    summary.pending = len(timeline.rows) - state.data["emitted"]
    summary.clock = cutoff.isoformat() if cutoff else "end"
    return summary


def parse_start(value: Any) -> datetime:
    """A replay start date as aware UTC."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def next_due(spec: Mapping[str, Any], state_dir: Path, now: datetime, *, max_text_chars: int = 5000
             ) -> float | None:
    """Wall seconds until the replay's next row is due (0 if due now, None when the replay is finished)."""
    state = SourceState.load(state_dir, spec["source"])
    # The same limit as ingestion, so `emitted` indexes the same rows.
    timeline = ReplayTimeline.read(spec["path"], spec.get("format"), max_text_chars)
    emitted = int(state.data.get("emitted", 0))
    if emitted >= len(timeline.rows):
        return None
    speed = spec.get("speed")
    cutoff = replay_cutoff(state.data, now, speed) if state.data else None
    if not speed or cutoff is None:
        return 0.0
    return max(0.0, (timeline.published[emitted] - cutoff).total_seconds() / float(speed))


# ------------------------------------------------------------------------------------------------------- RSS
FetchFn = Callable[[str, Mapping[str, str]], httpx.Response]
_TAG = re.compile(r"<[^>]+>")


def _http_get(url: str, headers: Mapping[str, str], *, timeout: float = 20.0, retries: int = 3) -> httpx.Response:
    """GET with retries and exponential backoff on connection errors and 5xx/429 answers."""
    delay = 1.0
    for attempt in range(1, retries + 1):
        try:
            response = httpx.get(url, headers=dict(headers), timeout=timeout, follow_redirects=True)
            if response.status_code < 500 and response.status_code != 429:
                return response
            problem = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            problem = f"{type(error).__name__}: {error}"
        if attempt == retries:
            raise ReadError(url, f"feed fetch failed after {retries} attempts ({problem})")
        logger.warning("feed %s: %s; retrying in %.0f s (attempt %d/%d)", url, problem, delay, attempt, retries)
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def plain_text(fragment: str) -> str:
    """HTML fragment -> plain text with whitespace collapsed (feed titles and summaries may carry markup)."""
    return " ".join(html.unescape(_TAG.sub(" ", fragment or "")).split())


def _entry_time(entry: Mapping[str, Any]) -> str | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc).isoformat()
    return entry.get("published") or entry.get("updated")  # unparsable dates go on as read, to be quarantined


def feed_rows(content: bytes, *, text: str = "title", fetched_at: datetime | None = None) -> Iterator[RawRow]:
    """Raw rows (id, text, published_at) from RSS/Atom bytes; `text` is "title" or "title_summary"."""
    parsed = feedparser.parse(content)
    if parsed.bozo and not parsed.entries:
        raise ValueError(f"not a readable RSS/Atom feed: {parsed.get('bozo_exception')}")
    for number, entry in enumerate(parsed.entries, start=1):
        title, summary = plain_text(entry.get("title", "")), plain_text(entry.get("summary", ""))
        body = f"{title}. {summary}" if text == "title_summary" and summary and summary != title else title
        published = _entry_time(entry)
        if published is None and fetched_at is not None:
            published = fetched_at.isoformat()  # undated items: the time we first saw them
        identifier = entry.get("id") or entry.get("link") or (_hash_id(title, published or "") if title else None)
        yield RawRow(number, {"id": identifier, "text": body, "published_at": published,
                              "link": entry.get("link")})


def ingest_feed(url: str, spec: Mapping[str, Any], options: IngestOptions, *, now: datetime,
                fetch: FetchFn | None = None) -> IngestSummary:
    """Fetch an RSS/Atom feed (conditional GET with ETag/Last-Modified) and ingest its entries."""
    feed_url, source = spec["url"], spec["source"]
    state = SourceState.load(options.state_dir, source)
    headers = {"User-Agent": "nlp-suite feed reader"}
    if state.data.get("url") == feed_url:
        headers.update({k: v for k, v in (("If-None-Match", state.data.get("etag")),
                                          ("If-Modified-Since", state.data.get("modified"))) if v})
    response = (fetch or (lambda u, h: _http_get(u, h, timeout=float(spec.get("timeout", 20)))))(feed_url, headers)
    if response.status_code == 304:
        logger.info("feed %s not modified since the last run", feed_url)
        return IngestSummary(source=source, path=feed_url)
    if response.status_code >= 400:
        raise ReadError(feed_url, f"HTTP {response.status_code}")
    try:
        rows = list(feed_rows(response.content, text=spec.get("text", "title"), fetched_at=now))
    except ValueError as error:
        raise ReadError(feed_url, str(error)) from None
    checked = check_raw_rows(rows, PRESETS["generic"], options.max_text_chars)
    summary = _ingest(url, checked, source, feed_url[:400], options)
    state.data = {"url": feed_url, "etag": response.headers.get("ETag"),
                  "modified": response.headers.get("Last-Modified"), "fetched_at": now.isoformat()}
    state.save()
    return summary
