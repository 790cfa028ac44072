"""Nightly batch: top-K recommendations per user into `recommendations` (atomic per run)."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import run_stage
from nlp_suite import pipeline

recommend_all = task(pipeline.recommend, name="recommend-all", cache_policy=NO_CACHE)


@flow(name="recommend")
def recommend(overrides: list[str] | None = None) -> dict:
    """A new complete run replaces the previous one only when it has finished."""
    return run_stage(recommend_all, overrides, "recommend-run", "Users, items, rows written and duration")
