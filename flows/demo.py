"""The whole job once: ingest → train (3 tasks) → score → alerts → recommend, with a summary table."""
from __future__ import annotations

import time

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from rich.console import Console
from rich.table import Table

from flows.alerts import alerts
from flows.ingest import ingest
from flows.recommend import recommend
from flows.score import score
from flows.train import train

TASKS = ("sentiment", "reply", "recommend")


@flow(name="demo-pipeline")
def demo(overrides: list[str] | None = None) -> list[dict]:
    """Run every stage on the configured data (the embedded sample by default) and time each one."""
    overrides = list(overrides or [])
    stages = [("ingest", lambda: ingest(overrides), describe_ingest)]
    stages += [(f"train {t}", lambda t=t: train(overrides + [f"task={t}"]), describe_train) for t in TASKS]
    stages += [("score", lambda: score(overrides), lambda r: f"{r['documents']} documents, "
                                                              f"{r['docs_per_second']:.0f} docs/s"),
               ("alerts", lambda: alerts(overrides), lambda r: f"{r['alerts_created']} new alert(s), "
                                                               f"{r['buckets_checked']} buckets checked"),
               ("recommend", lambda: recommend(overrides), lambda r: f"{r['rows']} rows for {r['users']} users")]
    rows = []
    for name, run, describe in stages:
        start = time.perf_counter()
        result = run()
        rows.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), "result": describe(result)})
    table = Table(title="nlp-suite demo pipeline")
    for column in ("stage", "seconds", "result"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for row in rows:
        table.add_row(row["stage"], f"{row['seconds']:.1f}", row["result"])
    Console(width=max(Console().width, 120)).print(table)
    markdown = "| stage | seconds | result |\n|---|---:|---|\n" + "\n".join(
        f"| {r['stage']} | {r['seconds']} | {r['result']} |" for r in rows)
    create_markdown_artifact(key="demo-summary", markdown=markdown, description="Demo pipeline summary")
    return rows


def describe_ingest(rows: list[dict]) -> str:
    """Stored/duplicates/quarantined over all sources."""
    docs = [r for r in rows if r.get("source") != "catalog"]
    return (f"{sum(r.get('stored', 0) for r in docs)} stored, {sum(r.get('duplicates', 0) for r in docs)} duplicates, "
            f"{sum(r.get('quarantined', 0) for r in docs)} quarantined")


def describe_train(result: dict) -> str:
    """Headline metrics and the promotion decision."""
    shown = {k: v for k, v in result["metrics"].items() if k in ("accuracy", "macro_f1", "ndcg@10", "hit@10")}
    metrics = ", ".join(f"{k}={v:.3f}" for k, v in shown.items())
    return f"{result['name']}: {metrics} ({'promoted' if result['promoted'] else 'kept previous'})"
