"""The whole chain through a real Prefect server, on SQLite and on PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from nlp_suite.data.sample import BURST_DAY, BURST_ENTITY
from nlp_suite.storage.models import (Alert, Document, ModelVersion, Quarantine, Recommendation,
                                      RecommendationRun, SentimentScore)
from nlp_suite.storage.session import session_scope

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def run_chain_and_check(url: str, tmp_path) -> None:
    from flows.demo import demo
    from flows.ingest import ingest

    overrides = [f"paths.var={tmp_path}", f"db.url={url}"]
    rows = demo(overrides)
    assert [r["stage"] for r in rows] == ["ingest", "train sentiment", "train reply", "train recommend", "score",
                                          "alerts", "recommend"]
    with session_scope(url) as session:
        documents = count(session, Document)
        assert documents > 1000
        assert count(session, Quarantine) == 0
        active = session.scalars(select(ModelVersion).where(ModelVersion.status == "active")).all()
        assert sorted(v.task for v in active) == ["recommend", "reply", "sentiment"]
        sentiment = next(v for v in active if v.task == "sentiment")
        assert sentiment.metrics["accuracy"] > 0.8
        assert count(session, SentimentScore, SentimentScore.model_version_id == sentiment.id) == documents
        alerts = session.scalars(select(Alert)).all()
        assert [(a.entity, a.bucket_start.date()) for a in alerts] == [(BURST_ENTITY, BURST_DAY)]
        assert alerts[0].evidence
        run = session.scalars(select(RecommendationRun).where(RecommendationRun.status == "complete")).one()
        assert count(session, Recommendation, Recommendation.run_id == run.id) > 0

    again = ingest(overrides)  # idempotent re-ingest through the flow
    assert sum(r.get("stored", 0) for r in again if r["source"] != "catalog") == 0
    with session_scope(url) as session:
        assert count(session, Document) == documents


def test_full_chain_sqlite(prefect_server, tmp_path):
    run_chain_and_check(f"sqlite:///{tmp_path / 'chain.db'}", tmp_path)


@pytest.mark.postgres
def test_full_chain_postgres(prefect_server, pg_url, tmp_path):
    run_chain_and_check(pg_url, tmp_path)
