"""Read-only queries behind the Monitor tab: plain functions of a database URL that return pandas frames.

- `active_sentiment_version(url)`: (id, name) of the active sentiment model, or None.
- `entities(url)`: watched entities that have documents.
- `sentiment_series(url, entity, start, end)`: one row per entity and day with SERIES_COLUMNS
  (`negative_share` = negatives / documents among the documents scored by the active sentiment model).
- `open_alerts(url, entity, start, end)`: open alerts with ALERT_COLUMNS, newest first (`evidence` = the evidence
  documents' texts joined with " | ").

Behind the Recommendations tab (the newest *complete* run, as `nlp_suite.recommend.batch` defines it):

- `latest_recommendation_run(url)`: id, finish time and model of that run, or None.
- `recommended_users(url)`: external ids of the users it has recommendations for.
- `user_history(url, user)`: the user's most recent interactions with HISTORY_COLUMNS, newest first.
- `user_recommendations(url, user)`: their recommendations with RECOMMENDATION_COLUMNS (score components).

Dates: `start`/`end` accept a datetime, date, ISO string, POSIX timestamp or None and filter whole UTC days,
both inclusive. Every function returns an empty frame with the documented columns when there is nothing to show.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pandas as pd
from sqlalchemy import and_, select

from nlp_suite.recommend.batch import latest_recommendations, latest_run_id
from nlp_suite.storage.models import (Alert, Document, DocumentEntity, Interaction, Item, ModelVersion,
                                      Recommendation, RecommendationRun, SentimentScore, User)
from nlp_suite.storage.session import session_factory

SERIES_COLUMNS = ["entity", "day", "documents", "negatives", "negative_share"]
ALERT_COLUMNS = ["id", "entity", "bucket_start", "bucket_end", "severity", "negative_share", "baseline_share",
                 "z_score", "negative_count", "total_count", "evidence"]
HISTORY_COLUMNS = ["occurred_at", "item_id", "title", "category", "event", "value"]
RECOMMENDATION_COLUMNS = ["rank", "item_id", "title", "category", "model", "popularity", "freshness", "final"]
COMPONENTS = ["model", "popularity", "freshness"]  # the weighted terms a final score is the sum of
HISTORY_ROWS = 20  # interactions shown per user
NEGATIVE = "negative"
EVIDENCE_CHARS = 300  # each evidence text is cut to this length in the table

DateLike = datetime | date | str | float | int | None


def to_utc_day(value: DateLike) -> datetime | None:
    """Midnight UTC of the day `value` falls on (naive values are read as UTC); None for an empty value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)):
        stamp = pd.Timestamp(datetime.fromtimestamp(value, tz=timezone.utc))
    else:
        stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("D").to_pydatetime()


def _range(start: DateLike, end: DateLike) -> tuple[datetime | None, datetime | None]:
    """[first day, day after the last day) in UTC."""
    first, last = to_utc_day(start), to_utc_day(end)
    return first, (last + timedelta(days=1)) if last is not None else None


def active_version(url: str, task: str) -> tuple[int, str] | None:
    """(id, name) of the active model version of `task`, or None when there is none."""
    with session_factory(url)() as session:
        row = session.execute(
            select(ModelVersion.id, ModelVersion.name)
            .where(ModelVersion.task == task, ModelVersion.status == "active")
            .order_by(ModelVersion.id.desc()).limit(1)
        ).first()
    return (int(row.id), str(row.name)) if row else None


def active_sentiment_version(url: str) -> tuple[int, str] | None:
    """(id, name) of the active sentiment model version, or None when there is none."""
    return active_version(url, "sentiment")


def entities(url: str) -> list[str]:
    """Distinct entities linked to any document, sorted."""
    with session_factory(url)() as session:
        return list(session.scalars(select(DocumentEntity.entity).distinct().order_by(DocumentEntity.entity)))


def sentiment_series(url: str, entity: str | None = None, start: DateLike = None, end: DateLike = None,
                     model_version_id: int | None = None) -> pd.DataFrame:
    """Documents, negatives and negative share per (entity, UTC day) by the active (or given) sentiment model."""
    if model_version_id is None:
        active = active_sentiment_version(url)
        if active is None:
            return pd.DataFrame(columns=SERIES_COLUMNS)
        model_version_id = active[0]
    first, after_last = _range(start, end)
    query = (
        select(DocumentEntity.entity, Document.published_at, SentimentScore.label)
        .join(Document, Document.id == DocumentEntity.document_id)
        .join(SentimentScore, and_(SentimentScore.document_id == Document.id,
                                   SentimentScore.model_version_id == model_version_id))
        .where(Document.published_at.is_not(None))
    )
    if entity:
        query = query.where(DocumentEntity.entity == entity)
    if first is not None:
        query = query.where(Document.published_at >= first)
    if after_last is not None:
        query = query.where(Document.published_at < after_last)
    with session_factory(url)() as session:
        rows = session.execute(query).all()
    if not rows:
        return pd.DataFrame(columns=SERIES_COLUMNS)
    frame = pd.DataFrame(rows, columns=["entity", "published_at", "label"])
    frame["day"] = pd.to_datetime(frame["published_at"], utc=True).dt.floor("D")
    frame["negative"] = (frame["label"] == NEGATIVE).astype(int)
    series = (frame.groupby(["entity", "day"], as_index=False)
              .agg(documents=("negative", "size"), negatives=("negative", "sum")))
    series["negative_share"] = series["negatives"] / series["documents"]
    return series.sort_values(["entity", "day"], ignore_index=True)[SERIES_COLUMNS]


def _evidence_text(evidence: Any) -> str:
    texts = [str(item.get("text", "")) if isinstance(item, dict) else str(item) for item in evidence or []]
    return " | ".join(text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 1] + "…" for text in texts)


def open_alerts(url: str, entity: str | None = None, start: DateLike = None, end: DateLike = None) -> pd.DataFrame:
    """Open alerts whose spike starts in the date range, newest first."""
    first, after_last = _range(start, end)
    query = select(Alert).where(Alert.status == "open").order_by(Alert.bucket_start.desc(), Alert.id.desc())
    if entity:
        query = query.where(Alert.entity == entity)
    if first is not None:
        query = query.where(Alert.bucket_start >= first)
    if after_last is not None:
        query = query.where(Alert.bucket_start < after_last)
    with session_factory(url)() as session:
        alerts = session.scalars(query).all()
    rows = [
        {"id": a.id, "entity": a.entity, "bucket_start": pd.Timestamp(a.bucket_start),
         "bucket_end": pd.Timestamp(a.bucket_end), "severity": a.severity, "negative_share": a.negative_share,
         "baseline_share": a.baseline_share, "z_score": a.z_score, "negative_count": a.negative_count,
         "total_count": a.total_count, "evidence": _evidence_text(a.evidence)}
        for a in alerts
    ]
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


# ---------------------------------------------------------------------- recommendations


def latest_recommendation_run(url: str) -> dict[str, Any] | None:
    """{id, finished_at, model_version_id, model} of the newest complete run, or None."""
    with session_factory(url)() as session:
        run_id = latest_run_id(session)
        if run_id is None:
            return None
        run = session.get(RecommendationRun, run_id)
        version = session.get(ModelVersion, run.model_version_id) if run.model_version_id is not None else None
        return {"id": run.id, "finished_at": run.finished_at, "model_version_id": run.model_version_id,
                "model": version.name if version else None}


def recommended_users(url: str) -> list[str]:
    """External ids of the users with recommendations in the newest complete run, sorted."""
    with session_factory(url)() as session:
        run_id = latest_run_id(session)
        if run_id is None:
            return []
        return list(session.scalars(select(User.external_id).distinct()
                                    .join(Recommendation, Recommendation.user_id == User.id)
                                    .where(Recommendation.run_id == run_id).order_by(User.external_id)))


def user_history(url: str, user: str, limit: int = HISTORY_ROWS) -> pd.DataFrame:
    """The user's `limit` most recent interactions (any event), newest first."""
    query = (select(Interaction.occurred_at, Item.external_id, Item.title, Item.category, Interaction.event,
                    Interaction.value)
             .join(Item, Item.id == Interaction.item_id).join(User, User.id == Interaction.user_id)
             .where(User.external_id == user)
             .order_by(Interaction.occurred_at.desc(), Interaction.id.desc()).limit(limit))
    with session_factory(url)() as session:
        rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    if not frame.empty:
        frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def user_recommendations(url: str, user: str) -> pd.DataFrame:
    """The user's recommendations of the newest complete run, best first, one column per score component."""
    rows = [{"rank": r["rank"], "item_id": r["item_id"], "title": r["title"], "category": r["category"],
             **{name: float(r["components"].get(name, 0.0)) for name in COMPONENTS}, "final": float(r["score"])}
            for r in latest_recommendations(url, user)]
    return pd.DataFrame(rows, columns=RECOMMENDATION_COLUMNS)
