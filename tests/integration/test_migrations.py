"""Migrations upgrade and downgrade cleanly on SQLite and PostgreSQL and match the ORM exactly."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from nlp_suite.storage import migrate
from nlp_suite.storage.models import Base
from nlp_suite.storage.session import get_engine

EXPECTED = {"documents", "document_entities", "quarantine", "model_versions", "sentiment_scores", "alerts",
            "chat_sessions", "chat_messages", "users", "items", "interactions", "recommendation_runs",
            "recommendations"}


def tables(url: str) -> set[str]:
    return set(inspect(get_engine(url)).get_table_names()) - {"alembic_version"}


def check_round_trip(url: str) -> None:
    assert migrate.upgrade(url) == migrate.head()
    assert tables(url) >= EXPECTED
    assert migrate.upgrade(url) == migrate.head()  # idempotent
    with get_engine(url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"ORM and migrations disagree: {diff}"
    assert migrate.downgrade(url) is None
    assert tables(url) == set()
    assert migrate.upgrade(url) == migrate.head()


def test_sqlite_upgrade_downgrade(sqlite_url):
    check_round_trip(sqlite_url)


@pytest.mark.postgres
def test_postgres_upgrade_downgrade(pg_url):
    check_round_trip(pg_url)
