"""What every flow shares: config loading and turning stage summaries into Prefect artifacts."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from omegaconf import DictConfig
from prefect.artifacts import create_table_artifact
from rich.console import Console

from nlp_suite.config import load_config
from nlp_suite.pipeline import ensure_database


def flow_config(overrides: list[str] | None) -> DictConfig:
    """Composed config with the database migrated, as every flow needs."""
    cfg = load_config(overrides or [])
    ensure_database(cfg)
    return cfg


def as_row(summary: Any) -> dict[str, Any]:
    """A stage summary (dataclass) as a flat, JSON-friendly dict."""
    if summary is None:
        return {}
    row = dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else dict(summary)
    return {k: (round(v, 4) if isinstance(v, float) else v if isinstance(v, (int, str, bool)) or v is None else str(v))
            for k, v in row.items()}


def publish(key: str, rows: list[dict[str, Any]], description: str) -> None:
    """A table artifact in the Prefect UI (keys: lowercase, digits, dashes)."""
    if rows:
        create_table_artifact(table=rows, key=key, description=description)


def run_stage(stage: Callable[[DictConfig], Any], overrides: list[str] | None, key: str, description: str) -> dict:
    """Run one pipeline task on the composed config, print its summary table and publish it as an artifact."""
    cfg = flow_config(overrides)
    summary = stage(cfg)
    Console().print(summary.as_table())
    row = as_row(summary)
    publish(key, [row], description)
    return row
