"""Score documents that have no sentiment from the active model (incremental, idempotent)."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from flows.common import as_row, flow_config, publish
from nlp_suite import pipeline

score_documents = task(pipeline.score_documents, name="score-documents", cache_policy=NO_CACHE)


@flow(name="score")
def score(overrides: list[str] | None = None) -> dict:
    """Writes `sentiment_scores`; safe to re-run after a crash."""
    cfg = flow_config(overrides)
    summary = score_documents(cfg)
    Console().print(summary.as_table())
    row = as_row(summary)
    publish("scoring-run", [row], "Documents scored, throughput and duration")
    return row
