"""Replay timestamped files as a news stream: ingest what the replay clock reached, score, alert; until done."""
from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from flows.common import as_row, flow_config, publish
from nlp_suite import pipeline

ingest_source = task(pipeline.ingest_documents, name="ingest-source", cache_policy=NO_CACHE)
score_documents = task(pipeline.score_documents, name="score-documents", cache_policy=NO_CACHE)
raise_alerts = task(pipeline.raise_alerts, name="detect-alerts", cache_policy=NO_CACHE)


@flow(name="replay")
def replay(overrides: list[str] | None = None) -> list[dict]:
    """Runs until every replay source of `data.documents` is fully due; prints the alerts it raised."""
    cfg = flow_config(overrides)
    sources = [dict(s) for s in cfg.data.documents if s.get("type") == "replay"]
    if not sources:
        raise ValueError("no replay sources in data.documents; try data=headlines_replay")
    steps: list[dict] = []
    while True:
        summaries = [ingest_source(cfg, source) for source in sources]
        row = {"step": len(steps) + 1, "stored": sum(s.stored for s in summaries),
               "pending": sum(s.pending or 0 for s in summaries), "clock": min(s.clock or "" for s in summaries)}
        if row["stored"] and cfg.replay.score:
            row["scored"] = score_documents(cfg).documents
            row["alerts_created"] = raise_alerts(cfg).alerts_created
        steps.append(row)
        Console().print(f"replay step {row['step']}: {as_row(row)}")
        wait = pipeline.replay_wait(cfg)
        if wait is None:
            break
        time.sleep(min(wait, float(cfg.replay.poll_seconds)))
    Console().print(pipeline.alerts_table(cfg))
    publish("replay-steps", steps, "Rows stored, scored and alerts raised per replay step")
    return steps
