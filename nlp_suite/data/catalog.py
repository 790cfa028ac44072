"""The recommendation catalog: validated items and interactions from CSV/Parquet into SQL, idempotently.

Files (CSV with a header, or Parquet; or pandas DataFrames with the same columns):

* items: ``id, title, description, tags, category, created_at`` — ``id`` and ``title`` required; tags
  '|'-separated; ``created_at`` ISO-8601 (naive times are read as UTC; empty means "now" at first insert).
* interactions: ``user_id, item_id, event, value, occurred_at`` — all required except ``value``
  (empty means 1.0); ``item_id`` must name an item of the items file or of the database.

A bad row never stops a load: it is skipped, counted and reported as a `RowError` naming file, row and field
("items.csv row 7, field 'created_at': ..."); the good rows go on. Whole-file problems (missing file, missing
required column) raise `ReadError`, before anything is written.

The same readers feed the recommend task (`RecommendTask.load_data`), so training and SQL see the same rows.
"""
from __future__ import annotations

import csv
import logging
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
from rich.table import Table
from sqlalchemy import select, update

from nlp_suite.data.readers import ReadError
from nlp_suite.storage.base import utcnow
from nlp_suite.storage.models import Interaction, Item, User
from nlp_suite.storage.session import insert_ignoring_conflicts, session_scope

log = logging.getLogger(__name__)

Source = Union[str, Path, pd.DataFrame]

ITEM_COLUMNS = ("id", "title", "description", "tags", "category", "created_at")
INTERACTION_COLUMNS = ("user_id", "item_id", "event", "value", "occurred_at")
REQUIRED_ITEM_COLUMNS = ("id", "title")
REQUIRED_INTERACTION_COLUMNS = ("user_id", "item_id", "event", "occurred_at")
POSITIVE_EVENTS = ("click", "like", "purchase")
RATING_EVENT = "rating"  # explicit rating: positive when value >= min_rating
MIN_RATING = 4.0

# Column widths of the ORM (storage/models.py).
MAX_EXTERNAL_ID, MAX_TITLE, MAX_TAGS, MAX_CATEGORY, MAX_EVENT = 128, 512, 1024, 128, 32
MAX_LOGGED_ERRORS = 20
MAX_KEPT_ERRORS = 1000

_SURROGATES = re.compile("[\udc80-\udcff]")  # undecodable bytes kept by errors="surrogateescape"


@dataclass(frozen=True)
class RowError:
    """A skipped input row: which file, which 1-based data row, which field, and why."""

    file: str
    row: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f" row {self.row}" if self.row is not None else "")
        return f"{where}, field {self.field!r}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class CatalogSummary:
    """What one `load_catalog` call read and wrote."""

    items_read: int = 0  # valid item rows
    items_inserted: int = 0
    items_updated: int = 0  # title/description/tags/category changed
    users_inserted: int = 0
    interactions_read: int = 0  # valid, de-duplicated interaction rows
    interactions_inserted: int = 0  # new rows (a re-run inserts 0)
    positives: int = 0  # valid rows that count as positive feedback
    bad_rows: int = 0  # skipped rows of both files
    errors: list[RowError] = field(default_factory=list)  # the first MAX_KEPT_ERRORS of them
    seconds: float = 0.0

    def as_table(self) -> Table:
        """Two-column rich table for the CLI."""
        table = Table(title="Catalog load")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for label, value in (("items read", self.items_read), ("items inserted", self.items_inserted),
                             ("items updated", self.items_updated), ("users inserted", self.users_inserted),
                             ("interactions read", self.interactions_read),
                             ("interactions inserted", self.interactions_inserted),
                             ("positive interactions", self.positives), ("bad rows skipped", self.bad_rows)):
            table.add_row(label, f"{value:,}")
        table.add_row("seconds", f"{self.seconds:.2f}")
        return table


# --- reading ---------------------------------------------------------------------------------------------------

def _source_name(source: Source, default: str) -> str:
    return default if isinstance(source, pd.DataFrame) else Path(source).name


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[RowError]]:
    """All columns as str, plus `_row` (1-based data row); malformed or non-UTF-8 rows become errors."""
    errors: list[RowError] = []
    records: list[list[Any]] = []
    try:
        handle = path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as error:
        raise ReadError(path, error.strerror or str(error)) from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next((row for row in reader if row), None)
        except csv.Error as error:
            raise ReadError(path, f"cannot parse the header: {error}") from None
        if header is None:
            raise ReadError(path, "no header row")
        columns = [name.strip() for name in header]
        if _SURROGATES.search("".join(columns)):
            raise ReadError(path, "the header is not valid UTF-8")
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        if repeated:
            raise ReadError(path, f"repeated column names {repeated}")
        number = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                number += 1
                errors.append(RowError(path.name, number, None, f"malformed CSV: {error}"))
                continue
            if not fields:  # blank line: not a row
                continue
            number += 1
            if len(fields) != len(columns):
                errors.append(RowError(path.name, number, None,
                                       f"expected {len(columns)} fields ({', '.join(columns)}), found {len(fields)}"))
                continue
            if _SURROGATES.search("\x00".join(fields)):
                bad = next(name for name, value in zip(columns, fields) if _SURROGATES.search(value))
                errors.append(RowError(path.name, number, bad, "not valid UTF-8"))
                continue
            records.append([*fields, number])
    frame = pd.DataFrame(records, columns=[*columns, "_row"], dtype=object)
    return frame, errors


def read_table(source: Source) -> tuple[pd.DataFrame, list[RowError]]:
    """A CSV/Parquet file (by extension) or a DataFrame, with a `_row` column; file-level problems raise ReadError."""
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True).copy()
        frame["_row"] = np.arange(1, len(frame) + 1)
        return frame, []
    path = Path(source)
    if not path.exists():
        raise ReadError(path, "no such file")
    if path.is_dir():
        raise ReadError(path, "is a directory, not a file")
    if path.stat().st_size == 0:
        raise ReadError(path, "file is empty")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for corrupt files
            raise ReadError(path, f"not a readable Parquet file: {error}") from None
        frame["_row"] = np.arange(1, len(frame) + 1)
        return frame, []
    if suffix in (".csv", ".txt"):
        return _read_csv(path)
    raise ReadError(path, f"cannot tell the file format from the extension {path.suffix!r}; use .csv or .parquet")


def _require(frame: pd.DataFrame, required: Sequence[str], name: str) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ReadError(name, f"the header lacks required columns {missing}; found "
                              f"{[c for c in frame.columns if c != '_row']}")


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as whitespace-stripped str ('' for missing/None/NaN); absent columns are all ''."""
    if column not in frame.columns:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    values = frame[column].astype(object)
    return values.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip())


def _timestamps(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as tz-aware UTC timestamps (NaT when empty or unparsable); naive values are read as UTC."""
    if column not in frame.columns:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    text = _text(frame, column)
    return pd.to_datetime(text.where(text != "", None), utc=True, errors="coerce", format="ISO8601")


class _Checker:
    """Accumulates per-row errors; each bad row is reported once, for its first problem."""

    def __init__(self, frame: pd.DataFrame, name: str):
        self.frame = frame
        self.name = name
        self.ok = pd.Series(True, index=frame.index)
        self.errors: list[RowError] = []

    def flag(self, bad: pd.Series, field: str, message: Any) -> None:
        """Mark rows where `bad` holds; `message` is a str or a function of the row's value."""
        bad = bad & self.ok
        if not bad.any():
            return
        values = self.frame.loc[bad, field] if field in self.frame.columns else pd.Series("", index=bad[bad].index)
        for row, value in zip(self.frame.loc[bad, "_row"], values):
            text = message(value) if callable(message) else message
            self.errors.append(RowError(self.name, int(row), field, text))
        self.ok &= ~bad


def read_items(source: Source) -> tuple[pd.DataFrame, list[RowError]]:
    """Valid item rows and the errors of the others.

    Returns columns ``external_id, title, description, tags, category, created_at (UTC or NaT), row``; tags are
    '|'-joined and stripped, over-long title/tags/category are cut to the column width, a repeated id is an error.
    """
    name = _source_name(source, "items")
    raw, errors = read_table(source)
    _require(raw, REQUIRED_ITEM_COLUMNS, name)
    ids, titles = _text(raw, "id"), _text(raw, "title")
    tags = _text(raw, "tags").map(lambda v: "|".join(t.strip() for t in v.split("|") if t.strip()))
    created = _timestamps(raw, "created_at")
    created_text = _text(raw, "created_at")
    check = _Checker(raw, name)
    check.flag(ids == "", "id", "empty id")
    check.flag(ids.str.len() > MAX_EXTERNAL_ID, "id", f"id longer than {MAX_EXTERNAL_ID} characters")
    check.flag(titles == "", "title", "empty title")
    check.flag(created.isna() & (created_text != ""), "created_at",
               lambda v: f"cannot parse {v!r} as an ISO-8601 timestamp")
    first_row = {}
    duplicate = pd.Series(False, index=raw.index)
    for index, (identifier, row) in enumerate(zip(ids, raw["_row"])):
        if not check.ok.iloc[index]:
            continue
        if identifier in first_row:
            duplicate.iloc[index] = True
        else:
            first_row[identifier] = int(row)
    check.flag(duplicate, "id", lambda v: f"duplicate id {str(v).strip()!r} (first at row {first_row[str(v).strip()]})")
    keep = check.ok
    items = pd.DataFrame({
        "external_id": ids[keep],
        "title": titles[keep].str.slice(0, MAX_TITLE),
        "description": _text(raw, "description")[keep],
        "tags": tags[keep].map(lambda v: _cut_tags(v, MAX_TAGS)),
        "category": _text(raw, "category")[keep].str.slice(0, MAX_CATEGORY),
        "created_at": created[keep],
        "row": raw["_row"][keep].astype(int),
    }).reset_index(drop=True)
    return items, _by_row(errors + check.errors)


def _by_row(errors: list[RowError]) -> list[RowError]:
    """Errors in file order."""
    return sorted(errors, key=lambda error: error.row if error.row is not None else 0)


def _cut_tags(tags: str, limit: int) -> str:
    """'|'-joined tags cut at a tag boundary to fit `limit` characters."""
    if len(tags) <= limit:
        return tags
    return tags[:limit].rsplit("|", 1)[0]


def read_interactions(source: Source, known_items: Iterable[str] | None = None
                      ) -> tuple[pd.DataFrame, list[RowError]]:
    """Valid interaction rows (de-duplicated on user, item, event, time) and the errors of the others.

    Returns columns ``user_id, item_id, event (lower case), value (float), occurred_at (UTC), row``. With
    `known_items`, an interaction with an unknown item is an error naming the item.
    """
    name = _source_name(source, "interactions")
    raw, errors = read_table(source)
    _require(raw, REQUIRED_INTERACTION_COLUMNS, name)
    users, items = _text(raw, "user_id"), _text(raw, "item_id")
    events = _text(raw, "event").str.lower()
    value_text = _text(raw, "value")
    values = pd.to_numeric(value_text.where(value_text != "", "1.0"), errors="coerce").astype(float)
    occurred = _timestamps(raw, "occurred_at")
    check = _Checker(raw, name)
    check.flag(users == "", "user_id", "empty user_id")
    check.flag(users.str.len() > MAX_EXTERNAL_ID, "user_id", f"user_id longer than {MAX_EXTERNAL_ID} characters")
    check.flag(items == "", "item_id", "empty item_id")
    check.flag(events == "", "event", "empty event")
    check.flag(events.str.len() > MAX_EVENT, "event", f"event longer than {MAX_EVENT} characters")
    check.flag(~np.isfinite(values), "value", lambda v: f"value {v!r} is not a finite number")
    check.flag(occurred.isna(), "occurred_at", lambda v: f"cannot parse {v!r} as an ISO-8601 timestamp")
    if known_items is not None:
        known = set(known_items)
        check.flag(~items.isin(known), "item_id",
                   lambda v: f"unknown item {str(v).strip()!r} (not in the items file or the database)")
    keep = check.ok
    frame = pd.DataFrame({"user_id": users[keep], "item_id": items[keep], "event": events[keep],
                          "value": values[keep], "occurred_at": occurred[keep],
                          "row": raw["_row"][keep].astype(int)})
    frame = frame.drop_duplicates(["user_id", "item_id", "event", "occurred_at"]).reset_index(drop=True)
    return frame, _by_row(errors + check.errors)


# --- derived views shared by the task and the batch recommender ------------------------------------------------

def item_text(title: str | None, tags: str | None, description: str | None) -> str:
    """The text the item tower reads: title, then tags, then description (the tokenizer cuts to max_len)."""
    parts = [(title or "").strip(), ", ".join(t.strip() for t in (tags or "").split("|") if t.strip()),
             (description or "").strip()]
    return ". ".join(part for part in parts if part)


def is_positive(events: pd.Series, values: pd.Series, positive_events: Sequence[str] = POSITIVE_EVENTS,
                min_rating: float = MIN_RATING) -> pd.Series:
    """Positive feedback: an event in `positive_events`, or a 'rating' with value >= `min_rating`."""
    events = events.astype(str).str.lower()
    return events.isin([e.lower() for e in positive_events]) | ((events == RATING_EVENT) & (values >= min_rating))


def positive_sequences(interactions: pd.DataFrame, positive_events: Sequence[str] = POSITIVE_EVENTS,
                       min_rating: float = MIN_RATING) -> dict[Any, list[Any]]:
    """user -> the items of the user's positive interactions in time order, each item once (first time)."""
    if interactions.empty:
        return {}
    positives = interactions[is_positive(interactions["event"], interactions["value"], positive_events, min_rating)]
    positives = positives.sort_values(["user_id", "occurred_at"], kind="stable")
    positives = positives.drop_duplicates(["user_id", "item_id"], keep="first")
    return {user: group.tolist() for user, group in positives.groupby("user_id", sort=True)["item_id"]}


# --- loading into SQL ------------------------------------------------------------------------------------------

def _python_time(value: Any) -> datetime | None:
    """pandas Timestamp/NaT -> aware datetime or None."""
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime().astimezone(timezone.utc)


def load_catalog(url: str, items_path: Source, interactions_path: Source, *,
                 positive_events: Sequence[str] = POSITIVE_EVENTS, min_rating: float = MIN_RATING
                 ) -> CatalogSummary:
    """Upsert items (by external id; title/description/tags/category updated when changed), users and
    interactions (unique on user, item, event, time) in one transaction. A re-run adds nothing.

    Bad rows are skipped, counted in `bad_rows` and listed in `errors`; `positive_events`/`min_rating` only
    decide the `positives` count (positivity is derived at read time, the table keeps every event).
    """
    started = time.perf_counter()
    summary = CatalogSummary()
    items, item_errors = read_items(items_path)
    with session_scope(url) as session:
        existing = {row.external_id: row for row in session.execute(
            select(Item.id, Item.external_id, Item.title, Item.description, Item.tags, Item.category))}
    interactions, interaction_errors = read_interactions(
        interactions_path, known_items=set(items["external_id"]) | set(existing))
    errors = item_errors + interaction_errors
    summary.items_read, summary.interactions_read = len(items), len(interactions)
    summary.positives = int(is_positive(interactions["event"], interactions["value"], positive_events,
                                        min_rating).sum()) if len(interactions) else 0
    summary.bad_rows, summary.errors = len(errors), errors[:MAX_KEPT_ERRORS]
    for error in errors[:MAX_LOGGED_ERRORS]:
        log.warning("skipped %s", error)
    if len(errors) > MAX_LOGGED_ERRORS:
        log.warning("... and %d more bad rows", len(errors) - MAX_LOGGED_ERRORS)

    now = utcnow()
    new_rows, changed = [], []
    for record in items.itertuples(index=False):
        values = {"title": record.title, "description": record.description or None, "tags": record.tags or None,
                  "category": record.category or None}
        old = existing.get(record.external_id)
        if old is None:
            new_rows.append({"external_id": record.external_id, **values,
                             "created_at": _python_time(record.created_at) or now})
        elif any(getattr(old, key) != value for key, value in values.items()):
            changed.append({"id": old.id, **values})  # created_at is kept: it dates the item's first appearance
    with session_scope(url) as session:
        summary.items_inserted = insert_ignoring_conflicts(session, Item, new_rows, ("external_id",))
        if changed:
            session.execute(update(Item), changed)
            summary.items_updated = len(changed)
        user_rows = [{"external_id": user, "created_at": now} for user in sorted(set(interactions["user_id"]))]
        summary.users_inserted = insert_ignoring_conflicts(session, User, user_rows, ("external_id",))
        item_ids = {external: key for external, key in session.execute(select(Item.external_id, Item.id))}
        user_ids = {external: key for external, key in session.execute(select(User.external_id, User.id))}
        rows = [{"user_id": user_ids[user], "item_id": item_ids[item], "event": event, "value": float(value),
                 "occurred_at": _python_time(when)}
                for user, item, event, value, when in zip(interactions["user_id"], interactions["item_id"],
                                                          interactions["event"], interactions["value"],
                                                          interactions["occurred_at"])]
        summary.interactions_inserted = insert_ignoring_conflicts(session, Interaction, rows,
                                                    ("user_id", "item_id", "event", "occurred_at"))
    summary.seconds = time.perf_counter() - started
    log.info("catalog: %d items (+%d new, %d updated), +%d users, +%d/%d interactions, %d bad rows in %.2fs",
             summary.items_read, summary.items_inserted, summary.items_updated, summary.users_inserted,
             summary.interactions_inserted, summary.interactions_read, summary.bad_rows, summary.seconds)
    return summary


# --- MovieLens adapter -----------------------------------------------------------------------------------------

_YEAR = re.compile(r"\((\d{4})\)\s*$")


def movielens_frames(folder: str | Path, tags_until: dict[str, pd.Timestamp] | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MovieLens (ml-latest-small layout) as (items, interactions) frames in the catalog's column shape.

    Items: ``id`` = movieId, ``title``, ``tags`` = genres ('|'), ``category`` = first genre, ``description`` =
    the users' free-text tags (distinct, most used first), ``created_at`` = 1 January of the year in the title
    (ISO-8601 text, else empty). Interactions: event ``rating`` with ``value`` = the stars, so with the default
    ``min_rating=4.0`` a rating >= 4 is positive. ``tags_until`` (userId -> time): keep only the tags a user
    wrote up to that time (users not in it: none), so an evaluation split can keep test-time tags out of the text.
    """
    folder = Path(folder)
    for name in ("movies.csv", "ratings.csv"):
        if not (folder / name).is_file():
            raise ReadError(folder / name, "no such file (expected the MovieLens ml-latest-small layout)")
    movies = pd.read_csv(folder / "movies.csv", dtype={"movieId": str, "title": str, "genres": str},
                         keep_default_na=False)
    ratings = pd.read_csv(folder / "ratings.csv", dtype={"userId": str, "movieId": str})
    tags_path = folder / "tags.csv"
    tags = (pd.read_csv(tags_path, dtype={"userId": str, "movieId": str, "tag": str}, keep_default_na=False)
            if tags_path.is_file() else pd.DataFrame(columns=["userId", "movieId", "tag", "timestamp"]))

    tags["tag"] = tags["tag"].astype(str).str.strip().str.lower()
    tags = tags[tags["tag"] != ""]
    if tags_until is not None:  # a tag written after a user's train period would leak test interactions
        limit = tags["userId"].map({user: pd.Timestamp(when).timestamp() for user, when in tags_until.items()})
        tags = tags[tags["timestamp"].astype(float) <= limit.fillna(-np.inf)]
    tag_counts = tags.groupby(["movieId", "tag"]).size().reset_index(name="n")
    tag_counts = tag_counts.sort_values(["movieId", "n", "tag"], ascending=[True, False, True])
    description = tag_counts.groupby("movieId")["tag"].agg(lambda values: ", ".join(values))

    # Not the first rating/tag time: that reads every rating, test ones included, so freshness would leak the
    # future (a movie "created" in the test period is one somebody is about to rate). The title year is static.
    year = movies["title"].str.extract(_YEAR)[0]
    created = pd.to_datetime(year.where(year.notna(), None) + "-01-01", utc=True, errors="coerce")

    genres = movies["genres"].where(movies["genres"] != "(no genres listed)", "")
    items = pd.DataFrame({
        "id": movies["movieId"],
        "title": movies["title"].str.strip(),
        "description": movies["movieId"].map(lambda movie: description.get(movie, "")),
        "tags": genres,
        "category": genres.str.split("|").str[0].fillna(""),
        "created_at": created.dt.strftime("%Y-%m-%dT%H:%M:%SZ").fillna(""),  # ISO text; '' = unknown (no year)
    })
    interactions = pd.DataFrame({
        "user_id": ratings["userId"],
        "item_id": ratings["movieId"],
        "event": RATING_EVENT,
        "value": ratings["rating"].astype(float),
        "occurred_at": pd.to_datetime(ratings["timestamp"], unit="s", utc=True),
    })
    return items, interactions
