"""Shared fixtures: isolated var/ and Prefect home, a fresh PostgreSQL database, a Prefect test server."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

# Before Prefect/Gradio are imported anywhere: offline, quiet, and nothing written to the real var/.
_SESSION_VAR = Path(tempfile.mkdtemp(prefix="nlp-suite-tests-"))
os.environ["NLP_SUITE_VAR"] = str(_SESSION_VAR)
os.environ["PREFECT_HOME"] = str(_SESSION_VAR / "prefect")
from nlp_suite.env import apply_defaults  # noqa: E402

apply_defaults(_SESSION_VAR)

PG_ADMIN_URL = os.environ.get("NLP_SUITE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _postgres_available() -> str | None:
    """None when the server answers, else why not."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as error:  # any connection problem means: no server to test against
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {error.__class__.__name__}"


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    problem = _postgres_available()
    if problem:
        if os.environ.get("NLP_SUITE_REQUIRE_POSTGRES"):
            pytest.fail(problem)
        pytest.skip(problem)
    name = f"nlp_suite_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    from nlp_suite.storage.session import get_engine

    get_engine(url).dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite file URL in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(scope="session")
def prefect_server():
    """One real Prefect test server (temporary SQLite in the isolated PREFECT_HOME) for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def pytest_collection_modifyitems(config, items):
    """Mark real-data tests so `-m "not realdata"` deselects them."""
    for item in items:
        if "realdata" in item.keywords and not SHARED_DATA.exists():
            item.add_marker(pytest.mark.skip(reason=f"real datasets not found at {SHARED_DATA}"))
