"""Nightly batch: top-K recommendations per user into `recommendations` (atomic per run)."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from flows.common import as_row, flow_config, publish
from nlp_suite import pipeline

recommend_all = task(pipeline.recommend, name="recommend-all", cache_policy=NO_CACHE)


@flow(name="recommend")
def recommend(overrides: list[str] | None = None) -> dict:
    """A new complete run replaces the previous one only when it has finished."""
    cfg = flow_config(overrides)
    summary = recommend_all(cfg)
    Console().print(summary.as_table())
    row = as_row(summary)
    publish("recommend-run", [row], "Users, items, rows written and duration")
    return row
