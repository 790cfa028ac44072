"""Alembic migrations driven from Python: `nlp-suite db upgrade|downgrade|current`."""
from __future__ import annotations

import io

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from nlp_suite.paths import alembic_ini
from nlp_suite.storage.session import get_engine


def alembic_config(url: str) -> Config:
    """Alembic config for db/ pointed at `url`."""
    config = Config(str(alembic_ini()), stdout=io.StringIO())
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> str | None:
    """Apply migrations up to `revision`; safe to repeat. Returns the new current revision."""
    get_engine(url)  # creates the SQLite folder
    command.upgrade(alembic_config(url), revision)
    return current(url)


def downgrade(url: str, revision: str = "base") -> str | None:
    """Revert migrations down to `revision` (default: drop everything)."""
    command.downgrade(alembic_config(url), revision)
    return current(url)


def current(url: str) -> str | None:
    """Revision the database is at, or None when no migration was applied."""
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    """Newest revision in db/migrations."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
