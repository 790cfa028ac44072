"""Alembic environment: metadata from nlp_suite's ORM, URL passed in by nlp_suite.storage.migrate."""
from alembic import context
from sqlalchemy import inspect

from nlp_suite.storage.models import Base
from nlp_suite.storage.session import get_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (alembic upgrade --sql)."""
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection; batch mode lets SQLite alter tables."""
    connection = config.attributes.get("connection")
    if connection is None:
        engine = get_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connection)


def _skip_views(connection):
    """include_name hook: autogenerate ignores SQL views (the dashboard views are not ORM tables)."""
    views: dict[str | None, set[str]] = {}  # per schema, read on first use (autogenerate only)

    def include_name(name, type_, parent_names) -> bool:
        if type_ != "table":
            return True
        schema = parent_names.get("schema_name")
        if schema not in views:
            views[schema] = set(inspect(connection).get_view_names(schema=schema))
        return name not in views[schema]

    return include_name


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      include_name=_skip_views(connection))
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
