"""Sources: drop folder, replay of a timestamped file with a speed factor, RSS/Atom feeds from a local server."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nlp_suite.data.readers import ReadError
from nlp_suite.data.sources import IngestOptions, feed_rows, ingest_source, next_due
from nlp_suite.monitoring.topics import TopicRules
from nlp_suite.storage import migrate
from nlp_suite.storage.models import Document, DocumentEntity, Quarantine
from nlp_suite.storage.session import session_scope

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
TOPICS = TopicRules({"Earnings": ["profit*", "earnings"], "M&A": ["acqui*", "merger"]})


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'sources.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def options(tmp_path: Path) -> IngestOptions:
    return IngestOptions(state_dir=tmp_path / "state", batch_size=3, topics=TOPICS)


def count(url: str, model) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(model))


def texts(url: str) -> list[str]:
    with session_scope(url) as session:
        return list(session.scalars(select(Document.text).order_by(Document.published_at, Document.id)))


# ---------------------------------------------------------------------------------------------- drop folder
def test_folder_ingests_new_and_changed_files_only_and_quarantines_unreadable_ones(tmp_path, db_url, options):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text("id,text,published_at\n1,Acme profit rises,2026-11-01\n2,,2026-11-01\n")
    (folder / "b.jsonl").write_text('{"id": "9", "text": "Acme to acquire Beta", "published_at": "2026-11-02"}\n')
    (folder / "broken.csv").write_text("")  # empty file: unreadable as a whole
    (folder / "notes.txt").write_text("not a data file")
    spec = {"type": "folder", "path": folder, "source": "drop"}

    first = ingest_source(db_url, spec, options)
    assert (first.read, first.stored, first.quarantined) == (4, 2, 2)  # 3 rows + the unreadable file
    assert first.reasons == {"missing text": 1, "unreadable file": 1}
    assert count(db_url, Document) == 2 and count(db_url, Quarantine) == 2

    again = ingest_source(db_url, spec, options)
    assert again.read == 0  # nothing new: files already done are skipped

    (folder / "b.jsonl").write_text('{"id": "9", "text": "Acme to acquire Beta", "published_at": "2026-11-02"}\n'
                                    '{"id": "10", "text": "Beta merger approved", "published_at": "2026-11-03"}\n')
    changed = ingest_source(db_url, spec, options)
    assert (changed.read, changed.stored, changed.duplicates) == (2, 1, 1)
    assert count(db_url, Document) == 3 and count(db_url, Quarantine) == 2
    with session_scope(db_url) as session:
        topics = dict(session.execute(select(Document.text, DocumentEntity.entity).join(DocumentEntity)).tuples().all())
    assert topics == {"Acme profit rises": "Earnings", "Acme to acquire Beta": "M&A", "Beta merger approved": "M&A"}


def test_missing_drop_folder_is_a_clear_error(tmp_path, db_url, options):
    with pytest.raises(ReadError, match="drop folder does not exist"):
        ingest_source(db_url, {"type": "folder", "path": tmp_path / "nope", "source": "drop"}, options)


# --------------------------------------------------------------------------------------------------- replay
def write_timeline(path: Path) -> None:
    """Rows out of publication order (1 h apart when sorted) plus one invalid row."""
    lines = ["id,text,published_at"]
    for hour in (3, 0, 2, 1, 5, 4):
        lines.append(f"r{hour},headline {hour},{(T0 - timedelta(days=30) + timedelta(hours=hour)).isoformat()}")
    lines.append("bad,no date here,")
    path.write_text("\n".join(lines) + "\n")


def test_replay_emits_rows_in_publication_order_as_the_clock_advances(tmp_path, db_url, options):
    path = tmp_path / "news.csv"
    write_timeline(path)
    spec = {"type": "replay", "path": path, "source": "replay", "speed": 3600}  # an hour of news per second

    start = ingest_source(db_url, spec, options, now=T0)
    assert (start.stored, start.quarantined, start.pending) == (1, 1, 5)  # the first row is due at once
    assert next_due(spec, options.state_dir, T0) == pytest.approx(1.0)

    later = ingest_source(db_url, spec, options, now=T0 + timedelta(seconds=2.5))
    assert (later.stored, later.quarantined, later.pending) == (2, 0, 3)
    assert texts(db_url) == ["headline 0", "headline 1", "headline 2"]

    same = ingest_source(db_url, spec, options, now=T0 + timedelta(seconds=2.5))
    assert same.read == 0  # nothing new is due: re-running is free and writes nothing

    done = ingest_source(db_url, spec, options, now=T0 + timedelta(hours=1))
    assert (done.stored, done.pending, done.clock) == (3, 0, (T0 - timedelta(days=30) + timedelta(hours=3600)).isoformat())
    assert texts(db_url) == [f"headline {h}" for h in range(6)]
    assert next_due(spec, options.state_dir, T0 + timedelta(hours=1)) is None
    assert count(db_url, Quarantine) == 1


def test_replay_after_a_lost_state_file_adds_no_duplicates(tmp_path, db_url, options):
    path = tmp_path / "news.csv"
    write_timeline(path)
    spec = {"type": "replay", "path": path, "source": "replay", "speed": 0}  # 0 = everything now
    assert ingest_source(db_url, spec, options, now=T0).stored == 6
    for state in options.state_dir.iterdir():
        state.unlink()  # as if the process died before saving its state
    again = ingest_source(db_url, spec, options, now=T0)
    assert (again.stored, again.duplicates) == (0, 6)
    assert count(db_url, Document) == 6 and count(db_url, Quarantine) == 1


def test_replay_speed_change_keeps_the_clock_where_it_was(tmp_path, db_url, options):
    path = tmp_path / "news.csv"
    write_timeline(path)
    spec = {"type": "replay", "path": path, "source": "replay", "speed": 3600}
    ingest_source(db_url, spec, options, now=T0)
    ingest_source(db_url, {**spec, "speed": 7200}, options, now=T0 + timedelta(seconds=1.5))  # clock at 1.5 h
    step = ingest_source(db_url, {**spec, "speed": 7200}, options, now=T0 + timedelta(seconds=2))  # +1 h -> 2.5 h
    assert texts(db_url) == ["headline 0", "headline 1", "headline 2"] and step.pending == 3


def test_replay_rejects_a_negative_speed(tmp_path, db_url, options):
    path = tmp_path / "news.csv"
    write_timeline(path)
    with pytest.raises(ValueError, match="speed must be >= 0"):
        ingest_source(db_url, {"type": "replay", "path": path, "source": "r", "speed": -1}, options, now=T0)


# ------------------------------------------------------------------------------------------------------ RSS
RSS = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Wire</title>
<item><guid>w-1</guid><title>Acme &lt;b&gt;profit&lt;/b&gt; jumps</title>
  <description>&lt;p&gt;Acme beat forecasts.&lt;/p&gt;</description><pubDate>{date1}</pubDate></item>
<item><guid>w-2</guid><title>Beta agrees merger</title><pubDate>{date2}</pubDate></item>
<item><guid>w-3</guid><title>Undated item</title></item>
<item><guid>w-4</guid><title></title><pubDate>{date2}</pubDate></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom wire</title><id>urn:feed</id><updated>2026-11-01T10:00:00Z</updated>
<entry><id>urn:a1</id><title>Gamma shares slide</title><updated>2026-11-01T09:30:00Z</updated>
  <summary type="html">&lt;i&gt;Gamma&lt;/i&gt; fell 9%</summary></entry>
</feed>"""


class FeedServer:
    """A local HTTP server serving one feed body with an ETag, answering 304 to a matching If-None-Match."""

    def __init__(self, body: str) -> None:
        self.body, self.requests, self.etag = body.encode(), [], '"v1"'
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(dict(self.headers))
                if self.headers.get("If-None-Match") == server.etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                status = 200 if self.path == "/feed.xml" else 404
                self.send_response(status)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("ETag", server.etag)
                self.end_headers()
                self.wfile.write(server.body if status == 200 else b"not found")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.xml"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def rss_server():
    server = FeedServer(RSS.format(date1=format_datetime(T0 - timedelta(hours=2)),
                                   date2=format_datetime(T0 - timedelta(hours=1))))
    yield server
    server.close()


def test_rss_feed_from_a_local_server_is_ingested_once(db_url, options, rss_server):
    spec = {"type": "rss", "url": rss_server.url, "source": "wire"}
    first = ingest_source(db_url, spec, options, now=T0)
    assert (first.read, first.stored, first.quarantined) == (4, 3, 1)
    assert first.reasons == {"missing text": 1}
    with session_scope(db_url) as session:
        rows = {d.external_id: d for d in session.scalars(select(Document))}
        topics = dict(session.execute(select(Document.external_id, DocumentEntity.entity).join(DocumentEntity)).tuples().all())
    assert rows["w-1"].text == "Acme profit jumps"  # markup stripped from titles
    assert rows["w-1"].published_at == T0 - timedelta(hours=2)
    assert rows["w-3"].published_at == T0  # undated items are stamped with the time they were first seen
    assert topics == {"w-1": "Earnings", "w-2": "M&A", "w-3": "Other"}

    second = ingest_source(db_url, spec, options, now=T0 + timedelta(minutes=15))
    assert second.read == 0 and rss_server.requests[-1].get("If-None-Match") == '"v1"'  # conditional GET -> 304
    rss_server.etag = '"v2"'  # the feed changed (same items): everything is a counted duplicate
    third = ingest_source(db_url, spec, options, now=T0 + timedelta(minutes=30))
    assert (third.stored, third.duplicates) == (0, 3)
    assert count(db_url, Document) == 3 and count(db_url, Quarantine) == 1


def test_rss_errors_name_the_feed(db_url, options, rss_server):
    with pytest.raises(ReadError, match="HTTP 404"):
        ingest_source(db_url, {"type": "rss", "url": rss_server.url.replace("feed", "gone"), "source": "w"},
                      options, now=T0)
    rss_server.body, rss_server.etag = b"<html><body>this is not a feed", '"x"'
    with pytest.raises(ReadError, match="not a readable RSS/Atom feed"):
        ingest_source(db_url, {"type": "rss", "url": rss_server.url, "source": "w"}, options, now=T0)


def test_atom_entries_and_summaries():
    rows = list(feed_rows(ATOM.encode(), text="title_summary"))
    assert [row.payload["id"] for row in rows] == ["urn:a1"]
    assert rows[0].payload["text"] == "Gamma shares slide. Gamma fell 9%"
    assert rows[0].payload["published_at"] == "2026-11-01T09:30:00+00:00"


def test_unknown_source_type_is_refused(db_url, options):
    with pytest.raises(ValueError, match="unknown type 'ftp'"):
        ingest_source(db_url, {"type": "ftp", "source": "x"}, options)
