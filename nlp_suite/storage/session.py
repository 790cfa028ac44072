"""Engines and sessions: one place that knows how to connect to SQLite or PostgreSQL."""
from __future__ import annotations

import json
import zlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import JSON, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """Foreign keys on, WAL so readers (UI) do not block the scoring writer, wait instead of failing when busy."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: no fsync per commit (many small chat/scoring commits); never corrupts, and an application crash
    # loses nothing - only an OS crash or power cut can drop the last commits (SQLite docs, "WAL mode").
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """One pooled engine per URL per process; creates the SQLite file's folder if needed."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(url: str) -> sessionmaker[Session]:
    """A sessionmaker bound to the engine for `url`; objects stay readable after commit."""
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with session_factory(url).begin() as session:
        yield session


def insert_ignoring_conflicts(
    session: Session, model: type, rows: Sequence[dict[str, Any]], conflict_columns: Sequence[str],
    chunk_size: int = 5000,
) -> int:
    """INSERT rows, skipping those that hit the unique key; returns how many were inserted.

    One cached `INSERT ... ON CONFLICT DO NOTHING RETURNING id` run as executemany per chunk: it compiles once
    (a literal multi-row VALUES statement recompiles per call, ~14 s for 100k rows) and RETURNING counts
    exactly on SQLite and PostgreSQL (psycopg reports rowcount -1 for executemany).
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if insert is None:
        raise NotImplementedError(f"upserts are implemented for sqlite and postgresql, not {dialect!r}")
    table = model.__table__
    statement = insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns)).returning(table.c.id)
    rows = list(rows)
    return sum(len(session.execute(statement, rows[i:i + chunk_size]).all()) for i in range(0, len(rows), chunk_size))


def _python_defaults(table, given: set[str]) -> dict[str, Any]:
    """Values of the Python-side column defaults (e.g. `scored_at=utcnow`) for columns the rows leave out."""
    values = {}
    for column in table.columns:
        default = column.default
        if column.name in given or column.primary_key or default is None or not default.is_scalar and not default.is_callable:
            continue
        values[column.name] = default.arg(None) if default.is_callable else default.arg  # one value per batch
    return values


def bulk_insert_ignoring_conflicts(
    session: Session, model: type, rows: Sequence[dict[str, Any]], conflict_columns: Sequence[str],
) -> int:
    """Fast bulk INSERT that skips unique-key conflicts and returns the exact number inserted (the scoring writer).

    PostgreSQL: COPY into a temp staging table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING (COPY streams
    rows without per-row parameter binding; the single INSERT reports an exact rowcount). SQLite: the driver's
    executemany with the count from `total_changes`. Both skip SQLAlchemy's per-row RETURNING processing, which
    cost more than the model in bench/scoring.py. Rows must share their keys; JSON columns are serialised here and
    Python-side column defaults (e.g. `scored_at`) are filled once per call.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        return insert_ignoring_conflicts(session, model, rows, conflict_columns)
    table = model.__table__
    given = list(rows[0])
    defaults = _python_defaults(table, set(given))
    columns = given + list(defaults)
    connection = session.connection()
    tail = tuple(defaults.values())
    if dialect == "sqlite":  # the columns' own bind processors: values stored exactly as the ORM would store them
        names = ", ".join(f'"{c}"' for c in columns)
        conflict = ", ".join(f'"{c}"' for c in conflict_columns)
        driver = connection.connection.driver_connection
        processors = [table.c[c].type.bind_processor(connection.dialect) or (lambda v: v) for c in columns]
        before = driver.total_changes
        driver.cursor().executemany(
            f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" for _ in columns)}) '
            f"ON CONFLICT ({conflict}) DO NOTHING",
            [tuple(process(v) for process, v in zip(processors, tuple(row[c] for c in given) + tail)) for row in rows])
        return driver.total_changes - before
    json_columns = {c for c in given if isinstance(table.c[c].type, JSON)}

    def write(copy) -> None:
        for row in rows:
            copy.write_row(tuple(json.dumps(row[c]) if c in json_columns else row[c] for c in given) + tail)

    return _copy_then_insert(connection, table, columns, write, conflict_columns)


def copy_insert_ignoring_conflicts(session: Session, model: type, columns: Sequence[str], data: str,
                                   conflict_columns: Sequence[str]) -> int:
    """PostgreSQL only: rows given as ready COPY text (tab-separated, one line per row, values escaped with
    `copy_text`) in `columns` order, inserted skipping unique-key conflicts; returns the exact number inserted.

    For hot paths that can format a whole chunk at once (the scoring writer): no per-row dict, json.dumps or
    `write_row`, which cost more CPU than PostgreSQL's own work on the rows.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        raise ValueError(f"COPY text is PostgreSQL's; this session is {connection.dialect.name}")
    return _copy_then_insert(connection, model.__table__, list(columns), lambda copy: copy.write(data),
                             conflict_columns)


def copy_text(value: str) -> str:
    """A string escaped for COPY's text format (backslash, tab, newline, carriage return)."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def _copy_then_insert(connection, table, columns: Sequence[str], write, conflict_columns: Sequence[str]) -> int:
    """COPY into a temp staging table (`write(copy)` feeds it), then one INSERT ... SELECT ... ON CONFLICT DO
    NOTHING, whose rowcount is exact."""
    names = ", ".join(f'"{c}"' for c in columns)
    conflict = ", ".join(f'"{c}"' for c in conflict_columns)
    staging = f"staging_{table.name}_{zlib.crc32(names.encode()):08x}"  # one staging table per column set
    connection.exec_driver_sql(
        f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" ON COMMIT DELETE ROWS AS SELECT {names} FROM "{table.name}" '
        "WITH NO DATA")
    with connection.connection.driver_connection.cursor().copy(f'COPY "{staging}" ({names}) FROM STDIN') as copy:
        write(copy)
    result = connection.exec_driver_sql(
        f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM "{staging}" ON CONFLICT ({conflict}) DO NOTHING')
    return result.rowcount
