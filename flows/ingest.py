"""Ingest what is new from every configured source (files, drop folders, replays, feeds) and the catalog."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from flows.common import as_row, flow_config, publish
from nlp_suite import pipeline

ingest_source = task(pipeline.ingest_documents, name="ingest-source", cache_policy=NO_CACHE)
load_catalog = task(pipeline.ingest_catalog, name="load-catalog", cache_policy=NO_CACHE)


@flow(name="ingest")
def ingest(overrides: list[str] | None = None) -> list[dict]:
    """Validate, dedupe and store documents; quarantine bad rows with their reasons."""
    cfg = flow_config(overrides)
    pipeline.ensure_sample_data(cfg)
    rows = []
    for source in cfg.data.documents:
        summary = ingest_source(cfg, dict(source))
        Console().print(summary.as_table())
        rows.append({"source": source["source"], "type": source.get("type", "file"), **as_row(summary)})
    catalog = load_catalog(cfg)
    if catalog is not None:
        rows.append({"source": "catalog", **as_row(catalog)})
    publish("ingest-summary", rows, "Rows read, stored, duplicated and quarantined per source")
    return rows
