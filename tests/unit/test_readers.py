"""CSV/JSONL/Parquet readers: bad rows become error rows, bad files raise ReadError up front."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nlp_suite.data.readers import PRESETS, ReadError, iter_raw_rows, resolve_format

SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
HEADLINES = SHARED_DATA / "financial_news_headlines_cnbc_guardian"
needs_headlines = pytest.mark.skipif(not HEADLINES.is_dir(), reason=f"real headline files absent: {HEADLINES}")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_csv_rows_with_multiline_fields_and_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b'id,text,published_at\n1,plain,2026-10-01\n\n2,"two\nlines, quoted",2026-10-02\n'
                                     b'3,"say ""hi""",2026-10-03\n')
    rows = list(iter_raw_rows(path))
    assert [row.line for row in rows] == [1, 2, 3]  # data rows; the blank line is not a row
    assert rows[1].payload == {"id": "2", "text": "two\nlines, quoted", "published_at": "2026-10-02"}
    assert rows[2].payload["text"] == 'say "hi"'
    assert all(row.error is None for row in rows)


def test_csv_wrong_field_count_keeps_raw_text(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b"id,text,published_at\n1,ok,2026-10-01\n2,too,many,fields\n3,short\n")
    rows = list(iter_raw_rows(path))
    assert rows[0].error is None
    assert rows[1].payload == {"raw": "2,too,many,fields"}
    assert rows[1].error == "expected 3 fields (id, text, published_at), found 4"
    assert rows[1].category == rows[2].category == "wrong columns"
    assert rows[2].payload == {"raw": "3,short"}


def test_csv_field_over_the_parser_limit_is_one_error_row(tmp_path: Path) -> None:
    huge = b"x" * 200_000  # over the csv module's 131,072-character field limit
    path = write(tmp_path / "a.csv", b'id,text,published_at\n1,"' + huge + b'",2026-10-01\n2,after,2026-10-02\n')
    bad, good = iter_raw_rows(path)
    assert bad.category == "malformed CSV" and "field larger than field limit" in bad.error
    assert len(bad.payload["raw"]) > 200_000
    assert (good.line, good.payload["text"]) == (2, "after")


def test_csv_non_utf8_bytes_name_the_field(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b"id,text,published_at\n1,caf\xe9 au lait,2026-10-01\n2,fine,2026-10-02\n")
    bad, good = iter_raw_rows(path)
    assert bad.category == "non-UTF-8"
    assert "field 'text'" in bad.error and "\\xe9" in bad.error
    assert good.error is None and good.payload["text"] == "fine"


def test_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "\ufeffid,text,published_at\r\n1,hello,2026-10-01\r\n".encode("utf-8"))
    (row,) = iter_raw_rows(path)
    assert row.payload == {"id": "1", "text": "hello", "published_at": "2026-10-01"}


def test_jsonl_rows(tmp_path: Path) -> None:
    lines = [json.dumps({"id": "1", "text": "ok", "published_at": "2026-10-01"}).encode(), b"",
             b'["a", "list"]', b"{not json", b'{"id": "5", "text": "bad \xff byte"}', b'{"id": 6, "text": "n\\u00e9"}']
    rows = list(iter_raw_rows(write(tmp_path / "a.jsonl", b"\n".join(lines) + b"\n")))
    assert [row.line for row in rows] == [1, 3, 4, 5, 6]  # physical line numbers, blank line skipped
    assert rows[0].error is None and rows[0].payload["text"] == "ok"
    assert rows[1].category == "invalid JSON" and rows[1].error == "expected a JSON object, found list"
    assert rows[1].payload == {"raw": '["a", "list"]'}
    assert rows[2].category == "invalid JSON" and rows[2].payload == {"raw": "{not json"}
    assert rows[3].category == "non-UTF-8" and "field 'text'" in rows[3].error
    assert rows[4].error is None and rows[4].payload == {"id": 6, "text": "n\u00e9"}


def test_parquet_rows_and_binary_fields(tmp_path: Path) -> None:
    table = pa.table({"id": ["1", "2"], "text": [b"hello", b"bad \xff"], "published_at": ["2026-10-01", None]})
    pq.write_table(table, tmp_path / "a.parquet")
    good, bad = iter_raw_rows(tmp_path / "a.parquet")
    assert (good.line, good.error, good.payload["text"]) == (1, None, "hello")
    assert bad.line == 2 and bad.category == "non-UTF-8" and "field 'text'" in bad.error
    assert bad.payload["published_at"] is None


@pytest.mark.parametrize("name, data, why", [
    ("empty.csv", b"", "file is empty"),
    ("blank.csv", b"\n\n", "no header row"),
    ("cols.csv", b"id,body\n1,x\n", "lacks required columns ['text', 'published_at']"),
    ("dup.csv", b"id,text,text,published_at\n", "repeated column names"),
    ("corrupt.parquet", b"PAR1 this is not parquet", "not a readable Parquet file"),
    ("notes.txt", b"id,text,published_at\n", "cannot tell the file format"),
])
def test_file_level_problems_raise_before_any_row(tmp_path: Path, name: str, data: bytes, why: str) -> None:
    path = write(tmp_path / name, data)
    with pytest.raises(ReadError, match="cannot read .*" + why.replace("[", r"\[").replace("]", r"\]")) as caught:
        iter_raw_rows(path)  # raised on the call itself, not on first iteration
    assert caught.value.path == path


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="no such file"):
        iter_raw_rows(tmp_path / "absent.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ReadError, match="is a directory"):
        iter_raw_rows(tmp_path / "folder.csv")


def test_parquet_missing_columns(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["1"]}), tmp_path / "a.parquet")
    with pytest.raises(ReadError, match="lacks required columns"):
        iter_raw_rows(tmp_path / "a.parquet")


def test_format_resolution(tmp_path: Path) -> None:
    assert resolve_format("x.jsonl")[0] == "jsonl"
    assert resolve_format("x.txt", "csv") == ("csv", PRESETS["generic"])
    assert resolve_format("x.txt", "cnbc") == ("csv", PRESETS["cnbc"])
    assert resolve_format("x.parquet", "generic")[0] == "parquet"
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        resolve_format("x.csv", "xml")


def test_cnbc_preset_converts_eastern_time_to_utc() -> None:
    to_fields = PRESETS["cnbc"].to_fields
    summer = to_fields({"Headlines": "Jim Cramer: buy", "Time": " 7:51  PM ET Fri, 17 July 2020", "Description": "d"})
    winter = to_fields({"Headlines": "h", "Time": "12:05  AM ET Mon,  6 Jan 2020", "Description": ""})
    assert summer["published_at"] == "2020-07-17T23:51:00+00:00"  # EDT is UTC-4
    assert winter["published_at"] == "2020-01-06T05:05:00+00:00"  # EST is UTC-5, and 12 AM is midnight
    assert to_fields({"Headlines": "h", "Time": "10:30  AM ET Tue, 1 Sept 2020"})["published_at"].startswith("2020-09-01T14:30")
    assert summer["text"] == "Jim Cramer: buy"
    assert len(summer["external_id"]) == 32 and summer["external_id"] == to_fields(
        {"Headlines": "Jim Cramer: buy", "Time": "7:51 PM ET Fri, 17 July 2020"})["external_id"]
    assert to_fields({"Headlines": "h", "Time": "sometime"})["published_at"] == "sometime"  # left for validation


def test_guardian_preset_dates_and_column_kickers() -> None:
    to_fields = PRESETS["guardian"].to_fields
    row = to_fields({"Time": "19 July 2020", "Headlines": "Business leader  \n\n\n  Vestager has tasted defeat"})
    assert row["published_at"] == "2020-07-19T00:00:00+00:00"
    assert row["text"] == "Business leader: Vestager has tasted defeat"
    assert to_fields({"Time": "February 2019", "Headlines": "h"})["published_at"] == "February 2019"


@pytest.mark.realdata
@needs_headlines
@pytest.mark.parametrize("name, preset, rows", [("cnbc_headlines.csv", "cnbc", 3080),
                                                 ("guardian_headlines.csv", "guardian", 17800)])
def test_real_headline_files_read_without_errors(name: str, preset: str, rows: int) -> None:
    read = list(iter_raw_rows(HEADLINES / name, preset))
    assert len(read) == rows  # matches SOURCE.md, multi-line Guardian headlines included
    assert [row for row in read if row.error] == []
