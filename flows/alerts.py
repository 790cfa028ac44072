"""Raise negative-sentiment spike alerts per watched entity (no duplicates on re-run)."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import run_stage
from nlp_suite import pipeline

raise_alerts = task(pipeline.raise_alerts, name="detect-alerts", cache_policy=NO_CACHE)


@flow(name="alerts")
def alerts(overrides: list[str] | None = None) -> dict:
    """Writes `alerts` and notifies once per new alert."""
    return run_stage(raise_alerts, overrides, "alerts-run", "Entities and buckets checked, alerts created")
