"""Typed ORM for every table of the suite. Tables are created by Alembic migrations (db/), never create_all."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nlp_suite.storage.base import Base, utcnow

MODEL_STATUSES = ("active", "candidate", "retired")


class Document(Base):
    """A text from one source (news, post, ticket); unique per (source, external_id)."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(256))
    text: Mapped[str] = mapped_column(Text)
    published_at: Mapped[Optional[datetime]] = mapped_column(index=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of normalised text
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)

    entities: Mapped[list["DocumentEntity"]] = relationship(back_populates="document", cascade="all, delete-orphan")


class DocumentEntity(Base):
    """Link from a document to a watched entity (company, ticker or topic)."""

    __tablename__ = "document_entities"
    __table_args__ = (UniqueConstraint("document_id", "entity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="company")  # company | topic

    document: Mapped[Document] = relationship(back_populates="entities")


class Quarantine(Base):
    """A rejected input row kept verbatim with the reason, so nothing is lost."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    location: Mapped[str] = mapped_column(String(512))  # file and row number
    raw_payload: Mapped[str] = mapped_column(Text)  # the row as read (JSON, or repr of undecodable bytes)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """A trained model on disk (safetensors + JSON) and its lifecycle status."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="candidate")  # one of MODEL_STATUSES
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SentimentScore(Base):
    """Sentiment of one document by one model version; at most one per pair."""

    __tablename__ = "sentiment_scores"
    __table_args__ = (UniqueConstraint("document_id", "model_version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    # No index of its own: the unique (document_id, model_version_id) one serves lookups; see migration 0003.
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    label: Mapped[str] = mapped_column(String(32))
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON)
    scored_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """A negative-sentiment spike for one entity in one time bucket."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("entity", "bucket_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entity: Mapped[str] = mapped_column(String(128), index=True)
    bucket_start: Mapped[datetime]
    bucket_end: Mapped[datetime]
    severity: Mapped[str] = mapped_column(String(16))  # low | medium | high
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    negative_count: Mapped[int] = mapped_column(Integer)
    total_count: Mapped[int] = mapped_column(Integer)
    negative_share: Mapped[float] = mapped_column(Float)
    baseline_share: Mapped[float] = mapped_column(Float)
    z_score: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model_version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[Optional[datetime]]


class ChatSession(Base):
    """One conversation in the chat UI."""

    __tablename__ = "chat_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # uuid4 hex
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    user_label: Mapped[Optional[str]] = mapped_column(String(128))
    handoff_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    messages: Mapped[list["ChatMessage"]] = relationship(back_populates="session", order_by="ChatMessage.id")


class ChatMessage(Base):
    """One turn (user or bot) with what the bot understood and how fast it answered."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # user | bot
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[Optional[str]] = mapped_column(String(128))
    confidence: Mapped[Optional[float]] = mapped_column(Float)
    retrieved_ids: Mapped[Optional[list[str]]] = mapped_column(JSON)
    latency_ms: Mapped[Optional[float]] = mapped_column(Float)
    feedback: Mapped[Optional[int]] = mapped_column(Integer)  # +1 thumbs up, -1 thumbs down
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    session: Mapped[ChatSession] = relationship(back_populates="messages")


class User(Base):
    """A recommendation user, known by the id of the source system."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[Optional[str]] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Item(Base):
    """A recommendable item described by text."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    title: Mapped[str] = mapped_column(String(512))
    description: Mapped[Optional[str]] = mapped_column(Text)
    tags: Mapped[Optional[str]] = mapped_column(String(1024))  # '|'-separated tags or genres
    category: Mapped[Optional[str]] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Interaction(Base):
    """What a user did with an item (view, click, like, purchase, rating)."""

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("user_id", "item_id", "event", "occurred_at"),
        Index("ix_interactions_user_time", "user_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float, default=1.0)
    occurred_at: Mapped[datetime]


class RecommendationRun(Base):
    """One batch of recommendations; readers use the newest complete run."""

    __tablename__ = "recommendation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | complete | failed
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]


class Recommendation(Base):
    """Rank `rank` item for a user in one run, with the parts of its score."""

    __tablename__ = "recommendations"
    __table_args__ = (UniqueConstraint("run_id", "user_id", "rank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("recommendation_runs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    components: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)


SCORING_RUN_STATUSES = ("running", "complete", "failed", "abandoned")  # abandoned: its process died


class ScoringRun(Base):
    """One batch-scoring pass of a sentiment model: how many documents, how fast, and how it ended."""

    __tablename__ = "scoring_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    documents: Mapped[int] = mapped_column(Integer, default=0)  # newly scored documents
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    docs_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]
    heartbeat_at: Mapped[Optional[datetime]]  # stamped with every committed chunk: a stale one means a dead process
    status: Mapped[str] = mapped_column(String(16), default="running")  # one of SCORING_RUN_STATUSES
