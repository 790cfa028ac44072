"""What every flow shares: config loading and turning stage summaries into Prefect artifacts."""
from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig
from prefect.artifacts import create_table_artifact

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
