"""Row-by-row readers for CSV, JSONL and Parquet that turn bad rows into error rows instead of crashing."""
from __future__ import annotations

import calendar
import csv
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TextIO
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

FILE_FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}

# Reason categories of reader-level errors (ingest adds its own validation categories).
NON_UTF8 = "non-UTF-8"
WRONG_COLUMNS = "wrong columns"
INVALID_JSON = "invalid JSON"
MALFORMED_CSV = "malformed CSV"

_EASTERN = ZoneInfo("America/New_York")


class ReadError(ValueError):
    """The file as a whole cannot be read (missing, empty, wrong header, corrupt); nothing was read from it."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(f"cannot read {path}: {why}")
        self.path = Path(path)
        self.why = why


@dataclass(frozen=True)
class RawRow:
    """One data row as read: `line` is the 1-based data row (CSV/Parquet) or line number (JSONL)."""

    line: int
    payload: dict[str, Any]  # field -> value as read; undecodable bytes kept as surrogate escapes
    error: str | None = None  # why the row cannot be used, naming the field where there is one
    category: str | None = None  # short reason category for summaries, set whenever `error` is


@dataclass(frozen=True)
class Preset:
    """How a source's columns map onto our fields `external_id`, `text`, `published_at`."""

    name: str
    columns: tuple[str, ...]  # source columns that must be present
    file_format: str | None  # None: decided by the file extension
    to_fields: Callable[[Mapping[str, Any]], dict[str, Any]]


def _clean(value: Any) -> str:
    """A cell as a whitespace-normalised string ('' for None)."""
    return " ".join(str(value).split()) if value is not None else ""


def _hash_id(*parts: str) -> str:
    """Stable id for sources without one: sha256 of the parts, 32 hex characters."""
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:32]


_MONTHS = [name.lower() for name in calendar.month_name[1:]]
_CNBC_TIME = re.compile(r"(\d{1,2}):(\d{2}) ([AP]M) ET [A-Za-z]{3}, (\d{1,2}) ([A-Za-z]+)\.? (\d{4})")
_DAY = re.compile(r"(\d{1,2}) ([A-Za-z]+) (\d{4})")


def _month(name: str) -> int:
    """Month number from a full or AP-style name ('July', 'Feb', 'Sept'); 0 when it is none."""
    name = name.lower()
    return next((i for i, full in enumerate(_MONTHS, start=1) if len(name) >= 3 and full.startswith(name)), 0)


def _parse_cnbc_time(value: str) -> str | None:
    """'7:51 PM ET Fri, 17 July 2020' (US Eastern, DST-aware) -> ISO-8601 UTC, or None when it does not fit."""
    match = _CNBC_TIME.fullmatch(value)
    if match is None or not _month(match[5]):
        return None
    hour, minute, half, day, month, year = match.groups()
    try:  # CNBC writes AP-style months (Jan, Sept, March), which strptime's %b/%B cannot both read
        local = datetime(int(year), _month(month), int(day), int(hour) % 12 + (12 if half == "PM" else 0), int(minute))
    except ValueError:
        return None
    return local.replace(tzinfo=_EASTERN).astimezone(timezone.utc).isoformat()


def _parse_day(value: str) -> str | None:
    """'19 July 2020' -> midnight UTC of that day (keeps the calendar day for daily buckets), or None."""
    match = _DAY.fullmatch(value)
    if match is None or not _month(match[2]):
        return None
    try:
        return datetime(int(match[3]), _month(match[2]), int(match[1]), tzinfo=timezone.utc).isoformat()
    except ValueError:
        return None


def _generic(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"external_id": payload.get("id"), "text": payload.get("text"), "published_at": payload.get("published_at")}


def _cnbc(payload: Mapping[str, Any]) -> dict[str, Any]:
    headline, time = _clean(payload.get("Headlines")), _clean(payload.get("Time"))
    # An unparsable time is passed on as read, so validation quarantines it with the original value.
    return {"external_id": _hash_id(headline, time), "text": headline, "published_at": _parse_cnbc_time(time) or time}


def _guardian(payload: Mapping[str, Any]) -> dict[str, Any]:
    headline, time = _clean(payload.get("Headlines")), _clean(payload.get("Time"))
    # Column pieces put their column name on a line of its own ('Nils Pratley on finance\n\n  Headline');
    # keep it, but as 'Column: Headline' rather than one run-on sentence.
    lines = [" ".join(line.split()) for line in str(payload.get("Headlines") or "").splitlines() if line.strip()]
    text = f"{lines[0]}: {' '.join(lines[1:])}" if len(lines) > 1 else headline
    # Some rows carry only 'February 2019'; they fail the day format and get quarantined rather than guessed.
    return {"external_id": _hash_id(headline, time), "text": text, "published_at": _parse_day(time) or time}


PRESETS: dict[str, Preset] = {
    "generic": Preset("generic", ("id", "text", "published_at"), None, _generic),
    "cnbc": Preset("cnbc", ("Headlines", "Time", "Description"), "csv", _cnbc),
    "guardian": Preset("guardian", ("Time", "Headlines"), "csv", _guardian),
}


def resolve_format(path: str | Path, format: str | None = None) -> tuple[str, Preset]:
    """(file format, preset) for `format`: a preset name, a file format (generic preset) or None (by extension)."""
    if format is not None and format not in PRESETS and format not in FILE_FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {sorted([*PRESETS, *FILE_FORMATS])}")
    preset = PRESETS.get(format or "generic", PRESETS["generic"])
    file_format = format if format in FILE_FORMATS else preset.file_format
    if file_format is None:
        file_format = EXTENSIONS.get(Path(path).suffix.lower())
        if file_format is None:
            raise ReadError(path, f"cannot tell the file format from the extension {Path(path).suffix!r}; "
                                  f"pass format= one of {list(FILE_FORMATS)}")
    return file_format, preset


def undecodable_bytes(value: str) -> bytes:
    """The raw bytes that were not UTF-8 in a string decoded with 'surrogateescape' (b'' if none)."""
    return bytes(ord(ch) - 0xDC00 for ch in value if "\udc80" <= ch <= "\udcff")


def _utf8_error(payload: Mapping[str, Any]) -> str | None:
    """"field 'x' is not valid UTF-8 (bytes ...)" for every field with undecodable bytes, else None."""
    problems = []
    for key, value in payload.items():
        bad = undecodable_bytes(key) + (undecodable_bytes(json.dumps(value, ensure_ascii=False, default=str))
                                        if not isinstance(value, str) else undecodable_bytes(value))
        if bad:
            problems.append(f"field {key!r} is not valid UTF-8 (bytes {bad[:8]!r})")
    return "; ".join(problems) or None


def _check_file(path: Path) -> None:
    """File-level checks that need no parsing."""
    if not path.exists():
        raise ReadError(path, "no such file")
    if path.is_dir():
        raise ReadError(path, "is a directory, not a file")
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ReadError(path, error.strerror or str(error)) from None
    if size == 0:
        raise ReadError(path, "file is empty")


def iter_raw_rows(path: str | Path, format: str | None = None) -> Iterator[RawRow]:
    """Rows of a CSV/JSONL/Parquet file; file-level problems raise ReadError now, before any row is yielded."""
    path = Path(path)
    file_format, preset = resolve_format(path, format)
    _check_file(path)
    if file_format == "csv":
        return _csv_rows(path, preset.columns)
    if file_format == "jsonl":
        return _jsonl_rows(path)
    return _parquet_rows(path, preset.columns)


def _open_text(path: Path) -> TextIO:
    """Open as UTF-8 (BOM tolerated) keeping undecodable bytes as surrogates, so one bad row cannot sink the file."""
    try:
        return path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as error:
        raise ReadError(path, error.strerror or str(error)) from None


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[RawRow]:
    handle = _open_text(path)
    consumed: list[str] = []  # physical lines of the record being parsed, to keep the raw text of bad rows

    def lines() -> Iterator[str]:
        for text in handle:
            consumed.append(text)
            yield text

    reader = csv.reader(lines())
    try:
        header = next((row for row in reader if row), None)
    except (csv.Error, OSError) as error:
        handle.close()
        raise ReadError(path, f"cannot parse the header: {error}") from None
    problem = _header_problem(header, required)
    if problem:
        handle.close()
        raise ReadError(path, problem)
    columns = [name.strip() for name in header]
    consumed.clear()
    return _csv_records(path, handle, reader, columns, consumed)


def _header_problem(header: list[str] | None, required: tuple[str, ...]) -> str | None:
    if header is None:
        return "no header row"
    columns = [name.strip() for name in header]
    if undecodable_bytes("".join(columns)):
        return "the header is not valid UTF-8"
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        return f"repeated column names {repeated}"
    missing = [name for name in required if name not in columns]
    if missing:
        return f"the header lacks required columns {missing}; found {columns}"
    return None


def _csv_records(path: Path, handle: TextIO, reader: Iterator[list[str]], columns: list[str],
                 consumed: list[str]) -> Iterator[RawRow]:
    number = 0
    try:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                number += 1
                yield RawRow(number, {"raw": _raw(consumed)}, f"malformed CSV: {error}", MALFORMED_CSV)
                consumed.clear()
                continue
            raw = _raw(consumed)
            consumed.clear()
            if not row:  # blank line: no data, not a row
                continue
            number += 1
            if len(row) != len(columns):
                yield RawRow(number, {"raw": raw}, f"expected {len(columns)} fields ({', '.join(columns)}), "
                                                   f"found {len(row)}", WRONG_COLUMNS)
                continue
            payload = dict(zip(columns, row))
            error = _utf8_error(payload)
            yield RawRow(number, payload, error, NON_UTF8 if error else None)
    except OSError as error:
        raise ReadError(path, f"read failed after row {number}: {error}") from None
    finally:
        handle.close()


def _raw(consumed: list[str]) -> str:
    return "".join(consumed).rstrip("\r\n")


def _jsonl_rows(path: Path) -> Iterator[RawRow]:
    return _jsonl_records(path, _open_text(path))  # opened now, so an unreadable file fails on the call


def _jsonl_records(path: Path, handle: TextIO) -> Iterator[RawRow]:
    try:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            text = text.rstrip("\r\n")
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                bad = undecodable_bytes(text)
                if bad:
                    yield RawRow(number, {"raw": text}, f"line is not valid UTF-8 (bytes {bad[:8]!r})", NON_UTF8)
                else:
                    yield RawRow(number, {"raw": text}, f"not valid JSON: {error.msg} at column {error.colno}",
                                 INVALID_JSON)
                continue
            if not isinstance(value, dict):
                yield RawRow(number, {"raw": text}, f"expected a JSON object, found {type(value).__name__}",
                             INVALID_JSON)
                continue
            error = _utf8_error(value)
            yield RawRow(number, value, error, NON_UTF8 if error else None)
    except OSError as error:
        raise ReadError(path, f"read failed: {error}") from None
    finally:
        handle.close()


def _parquet_rows(path: Path, required: tuple[str, ...]) -> Iterator[RawRow]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise ReadError(path, f"not a readable Parquet file: {error}") from None
    columns = parquet.schema_arrow.names
    missing = [name for name in required if name not in columns]
    if missing:
        raise ReadError(path, f"the file lacks required columns {missing}; found {columns}")
    return _parquet_records(path, parquet)


def _parquet_records(path: Path, parquet: pq.ParquetFile) -> Iterator[RawRow]:
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                number += 1
                # Binary columns come back as bytes; decode like the text readers so bad bytes name their field.
                payload = {key: value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
                           for key, value in record.items()}
                error = _utf8_error(payload)
                yield RawRow(number, payload, error, NON_UTF8 if error else None)
    except (pa.ArrowException, OSError) as error:
        raise ReadError(path, f"corrupt Parquet data after row {number}: {error}") from None
    finally:
        parquet.close()
