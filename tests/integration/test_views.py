"""Dashboard views of migration 0002 on SQLite and PostgreSQL: exact rows, downgrade, and the read-only role."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, make_url, select, text, update
from sqlalchemy.exc import ProgrammingError

from nlp_suite.storage import migrate
from nlp_suite.storage.models import (
    Alert, Document, DocumentEntity, ModelVersion, ScoringRun, SentimentScore,
)
from nlp_suite.storage.session import get_engine, session_scope

ROLE_SCRIPT = Path(__file__).resolve().parents[2] / "db" / "dashboards" / "readonly_role.sql"
VIEWS = {"sentiment_timeseries", "open_alerts", "entity_summary"}
UTC = timezone.utc

TIMESERIES_COLUMNS = ["time", "metric", "documents", "negative", "neutral", "positive", "negative_share"]
OPEN_ALERT_COLUMNS = ["id", "entity", "bucket_start", "bucket_end", "severity", "negative_count", "total_count",
                      "negative_share", "baseline_share", "z_score", "p_value", "model_version_id", "created_at",
                      "notified_at", "evidence_count"]
SUMMARY_COLUMNS = ["entity", "documents", "scored_documents", "negative_share", "scored_documents_7d",
                   "negative_share_7d", "open_alerts", "last_published_at"]


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, tz: timezone = UTC) -> datetime:
    """A March 2024 timestamp, UTC unless told."""
    return datetime(2024, 3, day, hour, minute, second, tzinfo=tz)


# key: (published_at, entities, label by the active model, label by the retired model).
# Every candidate-model score is "negative" and every retired one differs from the active one where both exist,
# so reading any version but the active one changes the expected numbers.
CORPUS: dict[str, tuple[datetime | None, list[str], str | None, str | None]] = {
    "a1": (at(1, 9), ["ACME"], "positive", "negative"),
    # 01:30 at UTC+5 is 20:30 UTC the day before: bucketed on March 1st.
    "a2": (at(2, 1, 30, tz=timezone(timedelta(hours=5))), ["ACME", "GLOBEX"], "negative", "positive"),
    "a3": (at(3, 23, 59, 59), ["ACME"], "neutral", "negative"),  # the second before the 7-day window
    "a4": (at(4), ["ACME"], "negative", "neutral"),  # the first instant of the 7-day window
    "a5": (at(9, 12), ["ACME"], None, "positive"),  # not scored by the active model yet
    "a6": (None, ["ACME"], "negative", None),  # no publication time: in totals, never in a day or the window
    "g1": (at(10, 8), ["GLOBEX"], "positive", "negative"),
    "g2": (at(10, 15), ["GLOBEX"], "negative", "negative"),  # the newest published_at: window = March 4..10
    "i1": (at(6), ["INITECH"], None, "negative"),  # an entity without any active score
    "n1": (at(5), [], "negative", "negative"),  # no entity: in no view
}


def seed(url: str) -> dict[str, Any]:
    """The corpus above, an open and a closed alert and a scoring run; returns the ids the tests need."""
    with session_scope(url) as session:
        def version(name: str, task: str, status: str) -> ModelVersion:
            model = ModelVersion(name=name, task=task, path=f"models/{name}", sha256=name.ljust(64, "0"),
                                 status=status)
            session.add(model)
            return model

        retired = version("sentiment-v1", "sentiment", "retired")
        active = version("sentiment-v2", "sentiment", "active")
        candidate = version("sentiment-v3", "sentiment", "candidate")
        version("intent-v1", "intent", "active")  # the newest active version, of another task
        session.flush()
        documents = {}
        for key, (published_at, entities, active_label, retired_label) in CORPUS.items():
            document = Document(source="news", external_id=key, text=f"text of {key}", published_at=published_at,
                                content_hash=key.ljust(64, "0"),
                                entities=[DocumentEntity(entity=entity) for entity in entities])
            session.add(document)
            session.flush()
            documents[key] = document.id
            for model, label in ((active, active_label), (retired, retired_label), (candidate, "negative")):
                if label is not None:
                    session.add(SentimentScore(document_id=document.id, model_version_id=model.id, label=label,
                                               probabilities={label: 0.9}))
        evidence = [{"document_id": documents["a4"], "text": "text of a4", "published_at": at(4).isoformat(),
                     "negative_probability": 0.9},
                    {"document_id": documents["a6"], "text": "text of a6", "published_at": None,
                     "negative_probability": 0.8}]
        opened = Alert(entity="ACME", bucket_start=at(4), bucket_end=at(5), severity="high", status="open",
                       negative_count=1, total_count=1, negative_share=1.0, baseline_share=0.25, z_score=3.5,
                       p_value=0.004, evidence=evidence, model_version_id=active.id, created_at=at(5, 6))
        closed = Alert(entity="GLOBEX", bucket_start=at(10), bucket_end=at(11), severity="low", status="closed",
                       negative_count=1, total_count=2, negative_share=0.5, baseline_share=0.2, z_score=3.1,
                       p_value=0.009, evidence=[], model_version_id=active.id, created_at=at(11, 1),
                       notified_at=at(11, 2))
        run = ScoringRun(model_version_id=active.id, started_at=at(10, 16))
        session.add_all([opened, closed, run])
        session.flush()
        return {"active": active.id, "retired": retired.id, "alert": opened.id, "run": run.id}


def utc(value: Any) -> datetime | None:
    """A view's timestamp as an aware UTC datetime: SQLite gives naive UTC text, PostgreSQL aware datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read(connection, view: str, order_by: str) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of a view; floats rounded so exact expectations can be written down."""
    result = connection.execute(text(f"SELECT * FROM {view} ORDER BY {order_by}"))
    rows = [tuple(round(value, 9) if isinstance(value, float) else value for value in row) for row in result]
    return list(result.keys()), rows


def check_views(url: str) -> None:
    """Upgrade, seed, and compare every view with the rows worked out by hand from CORPUS."""
    assert migrate.upgrade(url) == migrate.head()
    assert VIEWS <= set(inspect(get_engine(url)).get_view_names())
    command.check(migrate.alembic_config(url))  # autogenerate through env.py sees no difference, views included
    ids = seed(url)
    sqlite = url.startswith("sqlite")
    with get_engine(url).connect() as connection:
        if not sqlite:  # UTC days whatever the session's time zone (Tokyo would move a2 and g2 a day later)
            connection.execute(text("SET TIME ZONE 'Asia/Tokyo'"))

        columns, rows = read(connection, "sentiment_timeseries", "metric, time")
        assert columns == TIMESERIES_COLUMNS
        if sqlite:
            assert [row[0] for row in rows] == ["2024-03-01 00:00:00", "2024-03-03 00:00:00", "2024-03-04 00:00:00",
                                                "2024-03-01 00:00:00", "2024-03-10 00:00:00"]
        assert [(utc(row[0]), *row[1:]) for row in rows] == [
            (at(1), "ACME", 2, 1, 0, 1, 0.5),
            (at(3), "ACME", 1, 0, 1, 0, 0.0),
            (at(4), "ACME", 1, 1, 0, 0, 1.0),
            (at(1), "GLOBEX", 1, 1, 0, 0, 1.0),
            (at(10), "GLOBEX", 2, 1, 0, 1, 0.5),
        ]

        columns, rows = read(connection, "open_alerts", "id")
        assert columns == OPEN_ALERT_COLUMNS
        assert [tuple(utc(v) if c in ("bucket_start", "bucket_end", "created_at") else v
                      for c, v in zip(columns, row)) for row in rows] == [
            (ids["alert"], "ACME", at(4), at(5), "high", 1, 1, 1.0, 0.25, 3.5, 0.004, ids["active"], at(5, 6), None, 2),
        ]

        columns, rows = read(connection, "entity_summary", "entity")
        assert columns == SUMMARY_COLUMNS
        assert [(*row[:-1], utc(row[-1])) for row in rows] == [
            ("ACME", 6, 5, 0.6, 1, 1.0, 1, at(9, 12)),
            ("GLOBEX", 3, 3, round(2 / 3, 9), 2, 0.5, 0, at(10, 15)),
            ("INITECH", 1, 0, None, 0, None, 0, at(6)),
        ]

    with session_scope(url) as session:  # scoring_runs defaults
        run = session.get(ScoringRun, ids["run"])
        assert (run.status, run.documents, run.seconds, run.docs_per_second, run.finished_at) == (
            "running", 0, 0.0, 0.0, None)
        assert run.started_at == at(10, 16)
        # No active sentiment model: no series, nothing scored, alerts unchanged.
        session.execute(update(ModelVersion).where(ModelVersion.id == ids["active"]).values(status="retired"))
    with get_engine(url).connect() as connection:
        assert read(connection, "sentiment_timeseries", "metric, time")[1] == []
        assert [row[:6] for row in read(connection, "entity_summary", "entity")[1]] == [
            ("ACME", 6, 0, None, 0, None), ("GLOBEX", 3, 0, None, 0, None), ("INITECH", 1, 0, None, 0, None)]
        assert len(read(connection, "open_alerts", "id")[1]) == 1

    # Downgrade to 0001 removes the views and scoring_runs and keeps the data; upgrading brings them back.
    assert migrate.downgrade(url, "0001") == "0001"
    inspector = inspect(get_engine(url))
    assert not VIEWS & set(inspector.get_view_names())
    assert "scoring_runs" not in inspector.get_table_names()
    with session_scope(url) as session:
        assert len(session.scalars(select(Document.id)).all()) == len(CORPUS)
    assert migrate.upgrade(url) == migrate.head()
    assert VIEWS <= set(inspect(get_engine(url)).get_view_names())


def test_sqlite_views(sqlite_url):
    check_views(sqlite_url)


@pytest.mark.postgres
def test_postgres_views(pg_url):
    check_views(pg_url)


def apply_role_script(url: str) -> None:
    """Run readonly_role.sql as plain SQL (one simple-protocol batch), as any client would."""
    import psycopg

    with psycopg.connect(_libpq_url(url), autocommit=True) as connection:
        connection.execute(ROLE_SCRIPT.read_text())


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def as_reader(connection, sql: str) -> list[tuple]:
    """Run `sql` as dashboard_reader in a transaction that is always rolled back."""
    transaction = connection.begin()
    try:
        connection.execute(text("SET LOCAL ROLE dashboard_reader"))
        return connection.execute(text(sql)).all()
    finally:
        transaction.rollback()


@pytest.mark.postgres
def test_postgres_readonly_role(pg_url):
    migrate.upgrade(pg_url)
    seed(pg_url)
    apply_role_script(pg_url)
    apply_role_script(pg_url)  # idempotent
    if shutil.which("psql"):  # the documented way, a third time
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", _libpq_url(pg_url), "-f", str(ROLE_SCRIPT)],
                       check=True, capture_output=True, timeout=30)
    with get_engine(pg_url).connect() as connection:
        can_login, can_connect, has_usage = connection.execute(text(
            "SELECT rolcanlogin, has_database_privilege('dashboard_reader', current_database(), 'CONNECT'),"
            " has_schema_privilege('dashboard_reader', 'public', 'USAGE')"
            " FROM pg_roles WHERE rolname = 'dashboard_reader'")).one()
        assert (can_login, can_connect, has_usage) == (False, True, True)
        connection.rollback()

        for view in sorted(VIEWS):
            assert as_reader(connection, f"SELECT * FROM {view}"), view
        # What Grafana sends for $__timeFilter("time") on a time-series panel.
        assert as_reader(connection, "SELECT time AS \"time\", metric, negative_share FROM sentiment_timeseries"
                                     " WHERE \"time\" BETWEEN '2024-03-01T00:00:00Z' AND '2024-03-03T23:59:59Z'"
                                     " ORDER BY 1, 2") == [
            (at(1), "ACME", 0.5), (at(1), "GLOBEX", 1.0), (at(3), "ACME", 0.0)]

        denied = ["INSERT INTO documents (source, external_id, text, content_hash, ingested_at)"
                  " VALUES ('x', 'x', 'x', 'x', now())",
                  "UPDATE alerts SET status = 'closed'",
                  "DELETE FROM sentiment_scores",
                  "INSERT INTO scoring_runs (model_version_id, documents, seconds, docs_per_second, started_at,"
                  " status) VALUES (1, 0, 0, 0, now(), 'running')",
                  "SELECT * FROM documents",  # views only: no raw tables
                  "SELECT * FROM alerts"]
        for sql in denied:
            with pytest.raises(ProgrammingError, match="permission denied"):
                as_reader(connection, sql)
