"""Ingestion: exact stored/quarantined counts in SQL, idempotent re-runs, crash recovery, every file format."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from sqlalchemy import func, select

from nlp_suite.data import ingest as ingest_module
from nlp_suite.data.ingest import IngestSummary, check_rows, content_hash, ingest_file
from nlp_suite.data.readers import ReadError
from nlp_suite.data.sample import BURST_DAY, BURST_ENTITY, write_sample_data
from nlp_suite.monitoring.entities import Watchlist, WatchedEntity, load_watchlist
from nlp_suite.storage import migrate
from nlp_suite.storage.models import Document, DocumentEntity, Quarantine
from nlp_suite.storage.session import session_scope

SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
HEADLINES = SHARED_DATA / "financial_news_headlines_cnbc_guardian"
needs_headlines = pytest.mark.skipif(not HEADLINES.is_dir(), reason=f"real headline files absent: {HEADLINES}")

WATCHLIST = Watchlist([WatchedEntity(name="Contoso Bank", aliases=("Contoso", "CTSO")),
                       WatchedEntity(name="Rates", kind="topic", aliases=("rate cut",))])

# Ten data rows: 4 good, then one of each problem (rows 3-8).
BAD_INPUT = (
    b"id,text,published_at\n"
    b"a1,Contoso Bank's shares plunge after rate cut,2026-10-20T08:00:00Z\n"  # row 1: good, two entities
    b"a2,Markets calm,2026-10-20T10:00:00+02:00\n"  # row 2: good, offset converted to UTC
    b"a3,   ,2026-10-20T09:00:00Z\n"  # row 3: missing text
    b"a4,Fabrikam names new CFO,yesterday-ish\n"  # row 4: unparsable date
    b"a5,Caf\xe9 chain expands,2026-10-20T09:00:00Z\n"  # row 5: non-UTF-8
    b"a6," + b"x" * 5001 + b",2026-10-20T09:00:00Z\n"  # row 6: too long
    b"a1,Same id again,2026-10-21T09:00:00Z\n"  # row 7: duplicate id
    b"a8,too,many,fields\n"  # row 8: wrong columns
    b"a9,CTSO upgraded,2026-10-21 12:30:00\n"  # row 9: good, naive = UTC
    b'a10,"Two\nline headline",2026-10-22\n'  # row 10: good, multi-line, date only
)
EXPECTED_REASONS = {"missing text": 1, "unparsable date": 1, "non-UTF-8": 1, "too long": 1, "duplicate id": 1,
                    "wrong columns": 1}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ingest.db'}"
    migrate.upgrade(url)
    return url


def counts(url: str) -> tuple[int, int, int]:
    """(documents, quarantine rows, entity links) in the database."""
    with session_scope(url) as session:
        return tuple(session.scalar(select(func.count()).select_from(model))  # type: ignore[return-value]
                     for model in (Document, Quarantine, DocumentEntity))


def assert_balanced(summary: IngestSummary) -> None:
    assert summary.read == summary.stored + summary.duplicates + summary.quarantined  # nothing lost
    assert sum(summary.reasons.values()) == summary.quarantined


def test_bad_input_exact_counts_and_reasons(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_INPUT)
    summary = ingest_file(db_url, path, "test", watchlist=WATCHLIST, batch_size=4)
    assert (summary.read, summary.stored, summary.duplicates, summary.quarantined) == (10, 4, 0, 6)
    assert summary.reasons == EXPECTED_REASONS
    assert summary.quarantine_added == 6
    assert_balanced(summary)
    assert counts(db_url) == (4, 6, 3)  # links: a1 -> Contoso Bank + Rates, a9 -> Contoso Bank

    with session_scope(db_url) as session:
        documents = {d.external_id: d for d in session.scalars(select(Document))}
        quarantine = {q.location: q for q in session.scalars(select(Quarantine))}
        links = sorted(session.execute(select(Document.external_id, DocumentEntity.entity, DocumentEntity.kind)
                                       .join(DocumentEntity.document)).tuples())
    assert sorted(documents) == ["a1", "a10", "a2", "a9"]
    assert documents["a2"].published_at == datetime(2026, 10, 20, 8, tzinfo=timezone.utc)
    assert documents["a9"].published_at == datetime(2026, 10, 21, 12, 30, tzinfo=timezone.utc)
    assert documents["a10"].text == "Two\nline headline"
    assert documents["a10"].content_hash == hashlib.sha256(b"Two line headline").hexdigest()
    assert links == [("a1", "Contoso Bank", "company"), ("a1", "Rates", "topic"), ("a9", "Contoso Bank", "company")]

    assert sorted(quarantine) == [f"bad.csv:row {n}" for n in range(3, 9)]
    assert all(q.source == "test" for q in quarantine.values())
    assert quarantine["bad.csv:row 3"].reason.startswith("row 3: field 'text': is empty")
    assert quarantine["bad.csv:row 4"].reason == "row 4: field 'published_at': cannot parse 'yesterday-ish' as a date"
    assert quarantine["bad.csv:row 5"].reason.startswith("row 5: field 'text' is not valid UTF-8")
    assert quarantine["bad.csv:row 6"].reason == "row 6: field 'text': 5001 characters, more than the limit of 5000"
    assert quarantine["bad.csv:row 7"].reason == "row 7: duplicate external_id 'a1' (first at row 1)"
    assert quarantine["bad.csv:row 8"].reason == "row 8: expected 3 fields (id, text, published_at), found 4"
    # Raw payloads are valid JSON kept verbatim, with undecodable bytes made visible.
    assert json.loads(quarantine["bad.csv:row 5"].raw_payload)["text"] == "Caf\\xe9 chain expands"
    assert json.loads(quarantine["bad.csv:row 8"].raw_payload) == {"raw": "a8,too,many,fields"}
    assert json.loads(quarantine["bad.csv:row 7"].raw_payload)["text"] == "Same id again"


def test_reingest_stores_and_quarantines_nothing_new(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_INPUT)
    ingest_file(db_url, path, "test", watchlist=WATCHLIST)
    again = ingest_file(db_url, path, "test", watchlist=WATCHLIST)
    assert (again.read, again.stored, again.duplicates, again.quarantined, again.quarantine_added) == (10, 0, 4, 6, 0)
    assert_balanced(again)
    assert counts(db_url) == (4, 6, 3)


def test_same_ids_in_another_source_are_new(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_INPUT)
    ingest_file(db_url, path, "one")
    other = ingest_file(db_url, path, "two")
    assert (other.stored, other.quarantine_added) == (4, 6)
    assert counts(db_url)[:2] == (8, 12)


def test_crash_mid_file_loses_one_batch_and_rerun_completes(tmp_path: Path, db_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_INPUT)
    real_write = ingest_module._write_batch
    calls = []

    def crash_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_write_batch", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest_file(db_url, path, "test", batch_size=4)
    assert counts(db_url)[:2] == (2, 2)  # only batch 1 (rows 1-4) committed; batch 2 rolled back whole

    monkeypatch.setattr(ingest_module, "_write_batch", real_write)
    rerun = ingest_file(db_url, path, "test", batch_size=4)
    assert (rerun.stored, rerun.duplicates, rerun.quarantined, rerun.quarantine_added) == (2, 2, 6, 4)
    assert counts(db_url)[:2] == (4, 6)


def test_unreadable_file_raises_and_writes_nothing(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("identifier,body\n1,hello\n", encoding="utf-8")
    with pytest.raises(ReadError, match=r"wrong\.csv: the header lacks required columns"):
        ingest_file(db_url, path, "test")
    with pytest.raises(ReadError, match="no such file"):
        ingest_file(db_url, tmp_path / "absent.jsonl", "test")
    assert counts(db_url) == (0, 0, 0)


GOOD_ROWS = [
    {"id": "g1", "text": "Contoso Bank beats estimates", "published_at": "2026-10-01T08:00:00Z"},
    {"id": "g2", "text": "CTSO downgraded", "published_at": "2026-10-02T08:00:00+00:00"},
    {"id": "g3", "text": "", "published_at": "2026-10-03T08:00:00Z"},
    {"id": "g4", "text": "Litware schedules earnings call", "published_at": "not a date"},
]


def write_format(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"rows.{kind}"
    if kind == "csv":
        path.write_text("id,text,published_at\n" + "".join(f"{r['id']},{r['text']},{r['published_at']}\n"
                                                            for r in GOOD_ROWS), encoding="utf-8")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in GOOD_ROWS), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(GOOD_ROWS), path)
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_each_file_format(tmp_path: Path, db_url: str, kind: str) -> None:
    summary = ingest_file(db_url, write_format(tmp_path, kind), kind, watchlist=WATCHLIST)
    assert (summary.read, summary.stored, summary.quarantined) == (4, 2, 2)
    assert summary.reasons == {"missing text": 1, "unparsable date": 1}
    assert counts(db_url) == (2, 2, 2)


def test_parquet_timestamps_and_jsonl_missing_keys(tmp_path: Path, db_url: str) -> None:
    table = pa.table({"id": ["p1", "p2"], "text": ["naive", "aware"],
                      "published_at": pa.array([datetime(2026, 10, 1, 12), datetime(2026, 10, 1, 12)], pa.timestamp("s"))})
    pq.write_table(table, tmp_path / "t.parquet")
    assert ingest_file(db_url, tmp_path / "t.parquet", "pq").stored == 2
    (tmp_path / "m.jsonl").write_text('{"id": "j1", "text": "no date here"}\n', encoding="utf-8")
    summary = ingest_file(db_url, tmp_path / "m.jsonl", "js")
    assert summary.reasons == {"missing date": 1}
    with session_scope(db_url) as session:
        assert session.scalar(select(Document.published_at).where(Document.external_id == "p1")) == datetime(
            2026, 10, 1, 12, tzinfo=timezone.utc)


def test_summary_table_and_content_hash() -> None:
    summary = IngestSummary(read=3, stored=1, duplicates=1, quarantined=1, reasons={"too long": 1})
    console = Console(record=True, width=100)
    console.print(summary.as_table())
    text = console.export_text()
    assert "quarantined" in text and "too long" in text
    assert content_hash("a  b\n c ") == content_hash("a b c") == hashlib.sha256(b"a b c").hexdigest()


def test_sample_headlines_ingest_cleanly_with_entities(tmp_path: Path, db_url: str) -> None:
    files = write_sample_data(tmp_path / "sample")
    summary = ingest_file(db_url, files.headlines, "sample_news", watchlist=load_watchlist(files.watchlist))
    assert summary.quarantined == 0 and summary.stored == summary.read > 1500
    with session_scope(db_url) as session:
        burst_day = session.scalar(
            select(func.count()).select_from(DocumentEntity).join(DocumentEntity.document)
            .where(DocumentEntity.entity == BURST_ENTITY, func.date(Document.published_at) == BURST_DAY.isoformat()))
    assert burst_day >= 15 + 3


@pytest.mark.postgres
def test_bad_input_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    migrate.upgrade(pg_url)  # pg_url: a fresh database from tests/conftest.py, skipped without a server
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_INPUT)
    first = ingest_file(pg_url, path, "test", watchlist=WATCHLIST, batch_size=4)
    again = ingest_file(pg_url, path, "test", watchlist=WATCHLIST, batch_size=4)
    assert (first.stored, first.quarantined, first.reasons) == (4, 6, EXPECTED_REASONS)
    assert (again.stored, again.duplicates, again.quarantine_added) == (0, 4, 0)
    assert counts(pg_url) == (4, 6, 3)


@pytest.mark.realdata
@needs_headlines
def test_real_cnbc_file_ingests(db_url: str) -> None:
    summary = ingest_file(db_url, HEADLINES / "cnbc_headlines.csv", "cnbc", format="cnbc")
    # SOURCE.md: 3,080 rows of which 280 are completely empty (',,').
    assert (summary.read, summary.stored, summary.quarantined) == (3080, 2800, 280)
    assert summary.reasons == {"missing text": 280}
    assert counts(db_url)[:2] == (2800, 280)


@pytest.mark.realdata
@needs_headlines
def test_real_guardian_file_validates() -> None:
    categories: dict[str | None, int] = {}
    for row in check_rows(HEADLINES / "guardian_headlines.csv", format="guardian"):
        categories[row.category] = categories.get(row.category, 0) + 1
    # 40 rows carry only a month ('February 2019'); one headline repeats on the same day.
    assert categories == {None: 17759, "unparsable date": 40, "duplicate id": 1}
