"""Negative-spike alerts per watched entity: a bucket's negative share tested against its rolling baseline."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import httpx
import pandas as pd
from rich.table import Table
from scipy.stats import binomtest
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from nlp_suite.storage.base import utcnow
from nlp_suite.storage.models import Alert, Document, DocumentEntity, SentimentScore
from nlp_suite.storage.session import insert_ignoring_conflicts, session_factory

logger = logging.getLogger(__name__)

Notifier = Callable[[dict[str, Any]], None]
Explainer = Callable[[str], list[dict[str, Any]]]  # text -> [{"word", "weight"}] that pushed it negative

NEGATIVE = "negative"
BUCKETS = {"hour": pd.Timedelta(hours=1), "day": pd.Timedelta(days=1)}
# Add-one (Laplace) smoothing of the baseline: (negatives + 1) / (documents + 2). An empty history reads as
# 50 % instead of 0 %, so the z-score and the binomial test stay finite and a new entity needs real volume to alert.
PRIOR_NEGATIVE, PRIOR_TOTAL = 1.0, 2.0
# Severity from the z-score of the whole spike (pooled over its buckets) against the pre-spike baseline;
# below "medium" it is "low" (z_threshold, 3 by default, is the floor). Longer or larger spikes escalate.
SEVERITY_Z = (("high", 6.0), ("medium", 4.5))
# Alert fields a re-run may refresh; identity (entity, bucket_start), status, created_at and notified_at stay.
_REFRESHED = ("bucket_end", "severity", "negative_count", "total_count", "negative_share", "baseline_share",
              "z_score", "p_value", "evidence", "model_version_id")


def severity(z_score: float) -> str:
    """low | medium | high from the spike's z-score (see SEVERITY_Z)."""
    return next((name for name, floor in SEVERITY_Z if z_score >= floor), "low")


@dataclass
class AlertSummary:
    """What one detection run did."""

    entities_checked: int = 0
    buckets_checked: int = 0  # (entity, bucket) pairs with at least one document
    alerts_created: int = 0
    alerts_updated: int = 0
    notifications_sent: int = 0
    notifications_failed: int = 0  # left with notified_at NULL, retried on the next run

    def as_table(self) -> Table:
        """The summary as a two-column rich table for the CLI."""
        table = Table(title="Alerts")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in vars(self).items():
            table.add_row(name.replace("_", " "), f"{value:,}")
        return table


def load_labels(session: Session, model_version_id: int, fallback: bool = True) -> pd.DataFrame:
    """One row per (document, entity) with a score: entity, published_at (UTC), negative (0/1).

    The label is the version's own; with `fallback`, a document it has not scored yet (a rescoring backfill after
    a promotion is still running) takes its most recent score from another version, so the baseline of older
    buckets does not vanish and spikes are not missed while the backfill catches up.
    """
    preferred = case((SentimentScore.model_version_id == model_version_id, 0), else_=1)
    choice = func.row_number().over(partition_by=SentimentScore.document_id,
                                    order_by=(preferred, SentimentScore.scored_at.desc(), SentimentScore.id.desc()))
    ranked = select(SentimentScore.document_id, SentimentScore.label, choice.label("choice"))
    if not fallback:
        ranked = ranked.where(SentimentScore.model_version_id == model_version_id)
    score = ranked.subquery()
    rows = session.execute(
        select(DocumentEntity.entity, Document.published_at, (score.c.label == NEGATIVE).label("negative"))
        .join(Document, Document.id == DocumentEntity.document_id)
        .join(score, score.c.document_id == Document.id)
        .where(score.c.choice == 1, Document.published_at.is_not(None))
    ).all()
    frame = pd.DataFrame(rows, columns=["entity", "published_at", "negative"])
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True)
    frame["negative"] = frame["negative"].astype(int)
    return frame


def bucket_counts(labels: pd.DataFrame, bucket: str) -> pd.DataFrame:
    """Documents and negatives per (entity, bucket start); only non-empty buckets appear."""
    step = BUCKETS[bucket]
    counts = (
        labels.assign(bucket=labels["published_at"].dt.floor(step))
        .groupby(["entity", "bucket"], as_index=False)
        .agg(total=("negative", "size"), negative=("negative", "sum"))
    )
    return counts.sort_values(["entity", "bucket"], ignore_index=True)


def with_baseline(counts: pd.DataFrame, bucket: str, baseline_buckets: int) -> pd.DataFrame:
    """Add the smoothed baseline share of the previous `baseline_buckets` buckets, the share and its z-score."""
    window = BUCKETS[bucket] * baseline_buckets
    parts = []
    for _, group in counts.groupby("entity", sort=True):
        # A time-based window closed on the left is exactly the previous N buckets; empty buckets add nothing.
        previous = group.rolling(window, on="bucket", closed="left")[["total", "negative"]].sum().fillna(0.0)
        parts.append(group.assign(baseline_total=previous["total"], baseline_negative=previous["negative"]))
    scored = pd.concat(parts, ignore_index=True) if parts else counts.assign(baseline_total=[], baseline_negative=[])
    scored["baseline_share"] = (scored["baseline_negative"] + PRIOR_NEGATIVE) / (scored["baseline_total"] + PRIOR_TOTAL)
    scored["share"] = scored["negative"] / scored["total"]
    scored["z_score"] = _z(scored["share"], scored["baseline_share"], scored["total"])
    return scored


def _z(share: Any, baseline: Any, total: Any) -> Any:
    """z-score of a share against a baseline rate, binomial standard error under the baseline (floats or Series)."""
    return (share - baseline) / ((baseline * (1.0 - baseline) / total) ** 0.5)


def _p_value(negative: int, total: int, baseline: float) -> float:
    """One-sided exact binomial test: are there more negatives than the baseline rate explains?"""
    return float(binomtest(int(negative), int(total), float(baseline), alternative="greater").pvalue)


def find_spikes(
    scored: pd.DataFrame, *, min_volume: int, z_threshold: float, p_threshold: float
) -> pd.DataFrame:
    """Buckets with enough volume, a large z-score and a significant binomial test, with their p-values."""
    candidates = scored[(scored["total"] >= min_volume) & (scored["z_score"] >= z_threshold)].copy()
    # The exact test is the costly part, so it only runs on the few buckets that already pass the z-score.
    candidates["p_value"] = [
        _p_value(row.negative, row.total, row.baseline_share) for row in candidates.itertuples(index=False)
    ]
    return candidates[candidates["p_value"] <= p_threshold].reset_index(drop=True)


def group_runs(spikes: pd.DataFrame, bucket: str) -> list[dict[str, Any]]:
    """Merge consecutive spike buckets of one entity into one spike, tested pooled against its first baseline."""
    step = BUCKETS[bucket]
    if spikes.empty:
        return []
    spikes = spikes.sort_values(["entity", "bucket"], ignore_index=True)
    new_run = (spikes["entity"] != spikes["entity"].shift()) | (spikes["bucket"] - spikes["bucket"].shift() != step)
    runs = []
    for _, run in spikes.groupby(new_run.cumsum(), sort=True):
        negative, total = int(run["negative"].sum()), int(run["total"].sum())
        # The first bucket's baseline is the only one not inflated by the spike itself.
        baseline = float(run["baseline_share"].iloc[0])
        z_score = float(_z(negative / total, baseline, total))
        runs.append({
            "entity": run["entity"].iloc[0],
            "bucket_start": run["bucket"].iloc[0].to_pydatetime(),
            "bucket_end": (run["bucket"].iloc[-1] + step).to_pydatetime(),
            "negative_count": negative,
            "total_count": total,
            "negative_share": negative / total,
            "baseline_share": baseline,
            "z_score": z_score,
            "p_value": _p_value(negative, total, baseline),
            "severity": severity(z_score),
        })
    return runs


def evidence(
    session: Session, model_version_id: int, entity: str, start: datetime, end: datetime, limit: int,
    explainer: Explainer | None = None,
) -> list[dict[str, Any]]:
    """The `limit` most confidently negative documents of an entity in [start, end), with the words that drove them."""
    rows = session.execute(
        select(Document.id, Document.text, Document.published_at, SentimentScore.probabilities)
        .join(DocumentEntity, DocumentEntity.document_id == Document.id)
        .join(SentimentScore, SentimentScore.document_id == Document.id)
        .where(
            DocumentEntity.entity == entity,
            SentimentScore.model_version_id == model_version_id,
            SentimentScore.label == NEGATIVE,
            Document.published_at >= start,
            Document.published_at < end,
        )
    ).all()
    # Probabilities live in a JSON column, so rank in Python; a spike window holds few documents.
    ranked = sorted(rows, key=lambda row: (-float(row.probabilities.get(NEGATIVE, 0.0)), row.id))[:limit]
    return [
        {
            "document_id": row.id,
            "text": row.text,
            "published_at": row.published_at.isoformat(),
            "negative_probability": float(row.probabilities.get(NEGATIVE, 0.0)),
            **({"words": explainer(row.text)} if explainer is not None else {}),
        }
        for row in ranked
    ]


def alert_dict(alert: Alert) -> dict[str, Any]:
    """A JSON-ready view of an alert, as sent to notifiers and shown in the UI."""
    iso = lambda value: value.isoformat() if value is not None else None  # noqa: E731
    return {
        "id": alert.id,
        "entity": alert.entity,
        "bucket_start": iso(alert.bucket_start),
        "bucket_end": iso(alert.bucket_end),
        "severity": alert.severity,
        "status": alert.status,
        "negative_count": alert.negative_count,
        "total_count": alert.total_count,
        "negative_share": alert.negative_share,
        "baseline_share": alert.baseline_share,
        "z_score": alert.z_score,
        "p_value": alert.p_value,
        "evidence": list(alert.evidence or []),
        "model_version_id": alert.model_version_id,
        "created_at": iso(alert.created_at),
        "notified_at": iso(alert.notified_at),
    }


def _upsert(session: Session, values: dict[str, Any]) -> str | None:
    """Create the alert or refresh the one it continues; returns "created", "updated" or None (unchanged)."""
    # An overlapping or adjacent alert of the entity is the same spike (it grew, or late data moved its start).
    existing = session.scalars(
        select(Alert)
        .where(Alert.entity == values["entity"], Alert.bucket_start <= values["bucket_end"],
               Alert.bucket_end >= values["bucket_start"])
        .order_by(Alert.bucket_start)
        .limit(1)
    ).first()
    if existing is None:
        # ON CONFLICT DO NOTHING: a concurrent run that created it first is not an error.
        created = insert_ignoring_conflicts(session, Alert, [{**values, "status": "open"}], ("entity", "bucket_start"))
        return "created" if created else None
    refreshed = {**values, "bucket_end": max(existing.bucket_end, values["bucket_end"])}
    changed = False
    for field in _REFRESHED:
        if getattr(existing, field) != refreshed[field]:
            setattr(existing, field, refreshed[field])
            changed = True
    return "updated" if changed else None


def notify_pending(url: str, notifier: Notifier) -> tuple[int, int]:
    """Send every open alert not yet notified; a failure is logged and left for the next run. Returns (sent, failed)."""
    factory = session_factory(url)
    with factory() as session:
        pending = session.scalars(
            select(Alert).where(Alert.notified_at.is_(None), Alert.status == "open").order_by(Alert.id)
        ).all()
    sent = failed = 0
    for alert in pending:
        try:
            notifier(alert_dict(alert))
        except Exception:  # noqa: BLE001 - any notifier bug or outage must not lose the alert
            logger.exception("notifying alert %d (%s) failed; will retry on the next run", alert.id, alert.entity)
            failed += 1
            continue
        # At-least-once: a crash between the notifier and this commit re-sends the alert next run.
        with factory.begin() as session:
            session.get(Alert, alert.id).notified_at = utcnow()
        sent += 1
    return sent, failed


def detect_alerts(
    url: str,
    model_version_id: int,
    *,
    bucket: str = "day",
    baseline_buckets: int = 7,
    min_volume: int = 3,
    z_threshold: float = 3.0,
    p_threshold: float = 0.01,
    evidence_docs: int = 3,
    fallback: bool = True,
    notifier: Notifier | None = None,
    explainer: Explainer | None = None,
) -> AlertSummary:
    """Find negative spikes per entity, store them idempotently and notify each new alert once."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {sorted(BUCKETS)}, got {bucket!r}")
    if baseline_buckets < 1 or min_volume < 1:
        raise ValueError("baseline_buckets and min_volume must be >= 1")
    factory = session_factory(url)
    with factory() as session:
        counts = bucket_counts(load_labels(session, model_version_id, fallback), bucket)
    summary = AlertSummary(entities_checked=int(counts["entity"].nunique()), buckets_checked=len(counts))
    spikes = find_spikes(
        with_baseline(counts, bucket, baseline_buckets),
        min_volume=min_volume, z_threshold=z_threshold, p_threshold=p_threshold,
    )
    for run in group_runs(spikes, bucket):
        with factory.begin() as session:  # committed per alert, so a later failure keeps the earlier ones
            run["evidence"] = evidence(session, model_version_id, run["entity"], run["bucket_start"],
                                       run["bucket_end"], evidence_docs, explainer)
            outcome = _upsert(session, {**run, "model_version_id": model_version_id})
        if outcome == "created":
            summary.alerts_created += 1
            logger.info("alert: %s negative spike from %s (z=%.1f)", run["entity"], run["bucket_start"], run["z_score"])
        elif outcome == "updated":
            summary.alerts_updated += 1
    if notifier is not None:
        summary.notifications_sent, summary.notifications_failed = notify_pending(url, notifier)
    return summary


def open_alerts(url: str, entity: str | None = None) -> list[dict[str, Any]]:
    """Open alerts, newest spike first, optionally for one entity."""
    query = select(Alert).where(Alert.status == "open").order_by(Alert.bucket_start.desc(), Alert.id.desc())
    if entity is not None:
        query = query.where(Alert.entity == entity)
    with session_factory(url)() as session:
        return [alert_dict(alert) for alert in session.scalars(query)]


def log_notifier(alert: dict[str, Any]) -> None:
    """Notifier that writes the alert to the log at WARNING."""
    logger.warning(
        "ALERT %s %s: %d/%d negative (%.0f%% vs baseline %.0f%%, z=%.1f) from %s to %s",
        alert["severity"].upper(), alert["entity"], alert["negative_count"], alert["total_count"],
        100 * alert["negative_share"], 100 * alert["baseline_share"], alert["z_score"],
        alert["bucket_start"], alert["bucket_end"],
    )


def webhook_notifier(
    url: str, retries: int = 3, timeout: float = 5.0, *, backoff: float = 0.5,
    transport: httpx.BaseTransport | None = None,
) -> Notifier:
    """Notifier that POSTs the alert as JSON, retrying transport errors, 429 and 5xx with exponential backoff."""

    def notify(alert: dict[str, Any]) -> None:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            for attempt in range(retries + 1):
                try:
                    client.post(url, json=alert).raise_for_status()
                    return
                except httpx.HTTPStatusError as error:
                    # Other 4xx mean the request itself is wrong; repeating it cannot help.
                    if error.response.status_code != 429 and error.response.status_code < 500:
                        raise
                    if attempt == retries:
                        raise
                except httpx.TransportError:
                    if attempt == retries:
                        raise
                delay = backoff * 2**attempt
                logger.info("webhook %s failed (try %d/%d); retrying in %.1fs", url, attempt + 1, retries + 1, delay)
                time.sleep(delay)

    return notify
