"""Score documents that have no sentiment from the active model (incremental, idempotent, partitioned)."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from flows.common import as_row, flow_config, publish
from nlp_suite import pipeline

score_partition = task(pipeline.score_partition, name="score-partition", cache_policy=NO_CACHE)


@flow(name="score-partitions")
def score_partitions(overrides: list[str], partitions: int) -> dict:
    """Every partition as one task on this flow's task runner; returns the merged summary."""
    futures = [score_partition.submit(overrides, index, partitions) for index in range(partitions)]
    summary = pipeline.merge_scoring([future.result() for future in futures])
    Console().print(summary.as_table())
    row = {"partitions": partitions, **as_row(summary)}
    publish("scoring-run", [row], "Documents scored, throughput and duration")
    return row


@flow(name="score")
def score(overrides: list[str] | None = None) -> dict:
    """Writes `sentiment_scores`; safe to re-run after a crash; `score.scope=backfill` rescores after a promotion."""
    cfg = flow_config(overrides)
    runner = pipeline.scoring_task_runner(cfg)
    return score_partitions.with_options(task_runner=runner)(list(overrides or []), int(cfg.score.partitions))
