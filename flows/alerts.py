"""Raise negative-sentiment spike alerts per watched entity (no duplicates on re-run)."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from flows.common import as_row, flow_config, publish
from nlp_suite import pipeline

raise_alerts = task(pipeline.raise_alerts, name="detect-alerts", cache_policy=NO_CACHE)


@flow(name="alerts")
def alerts(overrides: list[str] | None = None) -> dict:
    """Writes `alerts` and notifies once per new alert."""
    cfg = flow_config(overrides)
    summary = raise_alerts(cfg)
    Console().print(summary.as_table())
    row = as_row(summary)
    publish("alerts-run", [row], "Entities and buckets checked, alerts created")
    return row
