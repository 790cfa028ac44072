"""Train (fine-tune) one task, register it and promote it if it beats the active version."""
from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import flow_config, publish
from nlp_suite import pipeline
from nlp_suite.training.distill import summary_markdown

train_task = task(pipeline.train_task, name="train-task", cache_policy=NO_CACHE)


@flow(name="train")
def train(overrides: list[str] | None = None) -> dict:
    """`overrides` picks the task, e.g. ["task=reply"]; returns the registered version and its metrics."""
    cfg = flow_config(overrides)
    pipeline.ensure_sample_data(cfg)
    result = train_task(cfg)
    publish(f"train-{result.task}-history", result.history, f"Training curve of {result.name}")
    create_markdown_artifact(
        key=f"train-{result.task}",
        markdown=f"**{result.name}** ({result.parameters:,} parameters, {result.seconds:.1f} s)\n\n"
                 f"metrics: `{result.metrics}`\n\npromotion: {result.reason}\n\ncurve: `{result.curve_png}`"
                 + (f"\n\n{summary_markdown(result.distillation)}" if result.distillation else ""))
    return {"task": result.task, "version_id": result.version_id, "name": result.name, "metrics": result.metrics,
            "promoted": result.promoted, "reason": result.reason, "seconds": result.seconds}
