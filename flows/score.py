"""Score documents that have no sentiment from the active model (incremental, idempotent)."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import run_stage
from nlp_suite import pipeline

score_documents = task(pipeline.score_documents, name="score-documents", cache_policy=NO_CACHE)


@flow(name="score")
def score(overrides: list[str] | None = None) -> dict:
    """Writes `sentiment_scores`; safe to re-run after a crash."""
    return run_stage(score_documents, overrides, "scoring-run", "Documents scored, throughput and duration")
