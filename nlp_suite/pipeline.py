"""The stages the flows run, as plain functions of the Hydra config (no Prefect here, so tests call them too)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nlp_suite.config import db_url
from nlp_suite.paths import resolve
from nlp_suite.storage import migrate

log = logging.getLogger(__name__)


def ensure_database(cfg: DictConfig) -> str:
    """Apply migrations (idempotent); returns the revision."""
    return migrate.upgrade(db_url(cfg))


def ensure_sample_data(cfg: DictConfig) -> None:
    """With data=sample (or anything built on it) write the embedded corpus if it is missing."""
    if not cfg.data.get("dir") or cfg.data.get("seed") is None:
        return
    from nlp_suite.data.sample import write_sample_data

    marker = Path(cfg.data.dir) / "faq.jsonl"
    if not marker.exists():
        log.info("writing the embedded sample data to %s", cfg.data.dir)
        write_sample_data(Path(cfg.data.dir), seed=int(cfg.data.seed))


def watchlist(cfg: DictConfig):
    """The configured watchlist, or None when the data config has none."""
    from nlp_suite.monitoring.entities import load_watchlist

    path = cfg.data.get("watchlist")
    return load_watchlist(resolve(path)) if path and resolve(path).exists() else None


def ingest_options(cfg: DictConfig):
    """What every source needs for ingestion: limits, state folder, watchlist and topic rules."""
    from nlp_suite.data.sources import IngestOptions
    from nlp_suite.monitoring.topics import topic_rules_from_config

    return IngestOptions(state_dir=resolve(cfg.ingest.state_dir), max_text_chars=cfg.ingest.max_text_chars,
                         batch_size=cfg.ingest.batch_size, watchlist=watchlist(cfg),
                         topics=topic_rules_from_config(cfg.get("topics")))


def source_spec(source: Any) -> dict[str, Any]:
    """A `data.documents` entry with its path made project-absolute."""
    spec = dict(source)
    if spec.get("path"):
        spec["path"] = resolve(spec["path"])
    return spec


def ingest_documents(cfg: DictConfig, source: dict[str, Any]):
    """Ingest what is new from one configured source (file, drop folder, replay or RSS feed)."""
    from nlp_suite.data.sources import ingest_source

    return ingest_source(db_url(cfg), source_spec(source), ingest_options(cfg))


def replay_wait(cfg: DictConfig) -> float | None:
    """Seconds until the next replayed row is due over all replay sources (None when every replay is done)."""
    from nlp_suite.data.sources import next_due
    from nlp_suite.storage.base import utcnow

    waits = [next_due(source_spec(s), resolve(cfg.ingest.state_dir), utcnow(), max_text_chars=cfg.ingest.max_text_chars)
             for s in cfg.data.documents if s.get("type") == "replay"]
    pending = [w for w in waits if w is not None]
    return min(pending) if pending else None


def ingest_catalog(cfg: DictConfig):
    """Load items, users and interactions for recommendation, when the data config has them."""
    from nlp_suite.data.catalog import load_catalog

    # cfg.data["items"], not cfg.data.items: DictConfig.items is the dict method.
    if not (cfg.data.get("items") and cfg.data.get("interactions")):
        return None
    return load_catalog(db_url(cfg), resolve(cfg.data["items"]), resolve(cfg.data["interactions"]))


def train_task(cfg: DictConfig):
    """Train and register the configured task (cfg.task)."""
    from nlp_suite.training.train import train

    return train(cfg)


def active_model(cfg: DictConfig, task: str):
    """(ModelVersion, LoadedModel) of the active version of `task`."""
    from nlp_suite.storage.session import session_scope
    from nlp_suite.training.registry import load_active

    with session_scope(db_url(cfg)) as session:
        return load_active(session, task)


def inference_model(model, precision: str = "fp32"):
    """The model as batch scoring runs it: DropConnect folded away, optionally dynamic int8."""
    from nlp_suite.models.quantize import for_inference, quantize_int8

    if precision not in ("fp32", "int8"):
        raise ValueError(f"score.precision must be fp32 or int8, got {precision!r}")
    return quantize_int8(model) if precision == "int8" else for_inference(model)


def score_documents(cfg: DictConfig, index: int = 0, count: int = 1):
    """Score the documents of partition `index` of `count` that lack a score from the active sentiment model."""
    from nlp_suite.monitoring.scoring import Partition, score_unscored
    from nlp_suite.tasks.classification import TextClassifier

    version, loaded = active_model(cfg, "sentiment")
    classifier = TextClassifier(inference_model(loaded.model, cfg.score.get("precision", "fp32")), loaded.tokenizer,
                                loaded.task.labels, loaded.max_len)
    return score_unscored(db_url(cfg), version.id, classifier, chunk_size=cfg.score.chunk_size,
                          scope=cfg.score.get("scope", "all"), partition=Partition(index, count),
                          stale_after_minutes=cfg.score.get("stale_run_minutes", 15))


def score_partition(overrides: list[str], index: int, count: int):
    """One scoring partition from plain arguments (what a Dask worker process receives)."""
    from nlp_suite.config import load_config
    from nlp_suite.env import apply_defaults

    apply_defaults()
    return score_documents(load_config(overrides), index, count)


def scoring_task_runner(cfg: DictConfig):
    """The Prefect task runner for scoring partitions: threads, or Dask (LocalCluster or a scheduler address)."""
    s = cfg.score
    if s.task_runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max(1, int(s.partitions)))
    if s.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if s.dask.address:
            return DaskTaskRunner(address=s.dask.address)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": int(s.dask.n_workers), "processes": True,
                                              "threads_per_worker": int(s.dask.threads_per_worker),
                                              "dashboard_address": None})
    raise ValueError(f"score.task_runner must be 'thread' or 'dask', got {s.task_runner!r}")


def merge_scoring(summaries: list):
    """One summary over parallel partitions (wall time is the slowest partition's)."""
    from nlp_suite.monitoring.scoring import ScoringSummary

    seconds = max((s.seconds for s in summaries), default=0.0)
    return ScoringSummary.of(sum(s.documents for s in summaries), sum(s.chunks for s in summaries), seconds)


def raise_alerts(cfg: DictConfig):
    """Detect negative spikes per watched entity for the active sentiment model."""
    from nlp_suite.monitoring.alerts import NEGATIVE, detect_alerts, log_notifier, webhook_notifier
    from nlp_suite.monitoring.explain import word_importance
    from nlp_suite.tasks.classification import TextClassifier

    version, loaded = active_model(cfg, "sentiment")
    a = cfg.alerts
    webhook = a.get("webhook_url")
    notifier = webhook_notifier(webhook) if webhook else log_notifier
    explainer = None
    if a.get("explain_words", 0):
        classifier = TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len)
        explainer = lambda text: word_importance(classifier, text, NEGATIVE, a.explain_words)  # noqa: E731
    return detect_alerts(db_url(cfg), version.id, bucket=a.bucket, baseline_buckets=a.baseline_buckets,
                         min_volume=a.min_volume, z_threshold=a.z_threshold, p_threshold=a.p_threshold,
                         evidence_docs=a.evidence_docs, fallback=a.get("fallback_to_other_versions", True),
                         notifier=notifier, explainer=explainer)


def alerts_table(cfg: DictConfig, limit: int = 50):
    """The open alerts as a rich table (entity, window, severity, negative share, top evidence)."""
    from rich.table import Table

    from nlp_suite.monitoring.alerts import open_alerts

    alerts = open_alerts(db_url(cfg))
    table = Table(title=f"Open alerts ({len(alerts)}, newest first)")
    for column in ("entity", "from", "to", "severity", "negative", "baseline"):
        table.add_column(column, no_wrap=True)
    table.add_column("top evidence [words]")
    for alert in alerts[:limit]:
        top = alert["evidence"][0] if alert["evidence"] else {}
        words = ", ".join(w["word"] for w in top.get("words", []))
        table.add_row(alert["entity"], alert["bucket_start"][:10], alert["bucket_end"][:10], alert["severity"],
                      f"{alert['negative_count']}/{alert['total_count']}", f"{alert['baseline_share']:.2f}",
                      (top.get("text", "")[:70] + (f" [{words}]" if words else "")))
    return table


def recommend(cfg: DictConfig):
    """Top-K recommendations for every user from the active recommendation model."""
    from nlp_suite.recommend.batch import recommend_all

    version, loaded = active_model(cfg, "recommend")
    r = cfg.recommend
    cache_dir = r.get("cache_dir")  # unset or null: item vectors are computed afresh every run
    return recommend_all(db_url(cfg), loaded, version.id, top_k=r.top_k, history=r.history,
                         weights=dict(r.weights), category_cap=r.category_cap,
                         half_life_days=r.freshness_half_life_days,
                         cache_dir=resolve(cache_dir) if cache_dir else None,
                         blend=dict(r.blend) if r.get("blend") else None)
