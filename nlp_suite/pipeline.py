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


def ingest_documents(cfg: DictConfig, source: dict[str, Any]):
    """Ingest one configured document file into `documents` (quarantining bad rows)."""
    from nlp_suite.data.ingest import ingest_file

    return ingest_file(db_url(cfg), resolve(source["path"]), source["source"], format=source.get("format"),
                       max_text_chars=cfg.ingest.max_text_chars, batch_size=cfg.ingest.batch_size,
                       watchlist=watchlist(cfg))


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


def score_documents(cfg: DictConfig):
    """Score every document that has no score from the active sentiment model."""
    from nlp_suite.monitoring.scoring import score_unscored
    from nlp_suite.tasks.classification import TextClassifier

    version, loaded = active_model(cfg, "sentiment")
    classifier = TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len)
    return score_unscored(db_url(cfg), version.id, classifier, chunk_size=cfg.score.chunk_size)


def raise_alerts(cfg: DictConfig):
    """Detect negative spikes per watched entity for the active sentiment model."""
    from nlp_suite.monitoring.alerts import detect_alerts, log_notifier, webhook_notifier

    version, _ = active_model(cfg, "sentiment")
    a = cfg.alerts
    webhook = a.get("webhook_url")
    notifier = webhook_notifier(webhook) if webhook else log_notifier
    return detect_alerts(db_url(cfg), version.id, bucket=a.bucket, baseline_buckets=a.baseline_buckets,
                         min_volume=a.min_volume, z_threshold=a.z_threshold, p_threshold=a.p_threshold,
                         evidence_docs=a.evidence_docs, notifier=notifier)


def recommend(cfg: DictConfig):
    """Top-K recommendations for every user from the active recommendation model."""
    from nlp_suite.recommend.batch import recommend_all

    version, loaded = active_model(cfg, "recommend")
    r = cfg.recommend
    return recommend_all(db_url(cfg), loaded, version.id, top_k=r.top_k, history=r.history,
                         weights=dict(r.weights), category_cap=r.category_cap,
                         half_life_days=r.freshness_half_life_days)
