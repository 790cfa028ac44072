"""Batch scoring: each document scored exactly once per model version, even across crashes and re-runs."""
from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from rich.console import Console
from sqlalchemy import func, select

from nlp_suite.monitoring.scoring import Partition, Predictor, ScoringSummary, score_unscored
from nlp_suite.storage import migrate
from nlp_suite.storage.models import Document, ModelVersion, ScoringRun, SentimentScore
from nlp_suite.storage.session import session_scope

LABELS = ["negative", "neutral", "positive"]


class KeywordPredictor:
    """Deterministic stand-in for the sentiment model: 'bad' is negative, 'good' positive, else neutral."""

    labels = LABELS

    def __init__(self, crash_on_call: int | None = None) -> None:
        self.calls = 0
        self.crash_on_call = crash_on_call

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise RuntimeError("simulated crash")
        rows = {"bad": [0.8, 0.15, 0.05], "good": [0.05, 0.15, 0.8]}
        return np.array([next((p for word, p in rows.items() if word in text), [0.1, 0.8, 0.1]) for text in texts])


def add_documents(url: str, texts: list[str], start: int = 0) -> None:
    """Insert documents with the given texts."""
    published = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with session_scope(url) as session:
        session.add_all(
            Document(source="test", external_id=str(start + i), text=text, published_at=published + timedelta(hours=i),
                     content_hash=hashlib.sha256(text.encode()).hexdigest())
            for i, text in enumerate(texts)
        )


def add_model_version(url: str, name: str = "sentiment-v1") -> int:
    """Register a model version and return its id."""
    with session_scope(url) as session:
        version = ModelVersion(name=name, task="sentiment", path=f"/models/{name}", sha256="0" * 64)
        session.add(version)
        session.flush()
        return version.id


def scores_per_document(url: str, model_version_id: int) -> dict[int, int]:
    """Number of score rows per document id for one model version."""
    with session_scope(url) as session:
        rows = session.execute(
            select(SentimentScore.document_id, func.count())
            .where(SentimentScore.model_version_id == model_version_id)
            .group_by(SentimentScore.document_id)
        ).all()
    return dict(rows)


def scoring_runs(url: str) -> list[ScoringRun]:
    """All scoring_runs rows, oldest first."""
    with session_scope(url) as session:
        runs = session.scalars(select(ScoringRun).order_by(ScoringRun.id)).all()
        session.expunge_all()
        return list(runs)


def document_ids(url: str) -> set[int]:
    with session_scope(url) as session:
        return set(session.scalars(select(Document.id)))


TEXTS = [("bad news" if i % 3 == 0 else "good results" if i % 3 == 1 else "a filing") + f" #{i}" for i in range(50)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> tuple[str, int]:
    """Migrated database (SQLite, and PostgreSQL whose writes take the COPY path) with 50 documents and one version."""
    url = f"sqlite:///{tmp_path / 'scoring.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    migrate.upgrade(url)
    add_documents(url, TEXTS)
    return url, add_model_version(url)


def test_keyword_predictor_satisfies_protocol():
    assert isinstance(KeywordPredictor(), Predictor)


def test_every_document_scored_exactly_once(db):
    url, version = db
    summary = score_unscored(url, version, KeywordPredictor(), chunk_size=7)
    assert (summary.documents, summary.chunks) == (50, 8)  # ceil(50 / 7)
    counts = scores_per_document(url, version)
    assert set(counts) == document_ids(url) and set(counts.values()) == {1}
    with session_scope(url) as session:
        rows = session.execute(select(Document.text, SentimentScore.label, SentimentScore.probabilities)
                               .join(SentimentScore, SentimentScore.document_id == Document.id)).all()
    assert len(rows) == 50
    for text, label, probabilities in rows:
        expected = "negative" if text.startswith("bad") else "positive" if text.startswith("good") else "neutral"
        assert label == expected
        assert set(probabilities) == set(LABELS) and sum(probabilities.values()) == pytest.approx(1.0)
        assert all(type(p) is float for p in probabilities.values())


def test_rerun_scores_nothing_new(db):
    url, version = db
    score_unscored(url, version, KeywordPredictor(), chunk_size=16)
    predictor = KeywordPredictor()
    summary = score_unscored(url, version, predictor, chunk_size=16)
    assert (summary.documents, summary.chunks, predictor.calls) == (0, 0, 0)
    assert sum(scores_per_document(url, version).values()) == 50


def test_crash_then_rerun_scores_each_document_exactly_once(db):
    url, version = db
    with pytest.raises(RuntimeError, match="simulated crash"):
        score_unscored(url, version, KeywordPredictor(crash_on_call=3), chunk_size=10)
    assert sum(scores_per_document(url, version).values()) == 20  # the two chunks before the crash were committed
    [run] = scoring_runs(url)
    assert (run.status, run.documents) == ("failed", 20)  # counted with every committed chunk, not at the end
    summary = score_unscored(url, version, KeywordPredictor(), chunk_size=10)
    assert summary.documents == 30
    counts = scores_per_document(url, version)
    assert set(counts) == document_ids(url) and set(counts.values()) == {1}


def test_new_documents_and_new_model_versions_are_picked_up(db):
    url, version = db
    score_unscored(url, version, KeywordPredictor())
    add_documents(url, ["bad quarter", "good quarter"], start=1000)
    assert score_unscored(url, version, KeywordPredictor()).documents == 2
    other = add_model_version(url, "sentiment-v2")
    assert score_unscored(url, other, KeywordPredictor(), chunk_size=64).documents == 52
    assert set(scores_per_document(url, version).values()) == {1}


def test_documents_scored_concurrently_are_not_duplicated(db):
    url, version = db
    with session_scope(url) as session:  # another worker already scored the first document
        first = min(session.scalars(select(Document.id)))
        session.add(SentimentScore(document_id=first, model_version_id=version, label="neutral",
                                   probabilities={"negative": 0.0, "neutral": 1.0, "positive": 0.0}))
    summary = score_unscored(url, version, KeywordPredictor(), chunk_size=50)
    assert summary.documents == 49
    assert set(scores_per_document(url, version).values()) == {1}


def test_bad_predictor_output_is_refused_and_nothing_stored(db):
    url, version = db

    class WrongShape(KeywordPredictor):
        def predict_proba(self, texts):
            return np.ones((len(texts), 2)) / 2

    with pytest.raises(ValueError, match="shape"):
        score_unscored(url, version, WrongShape())
    assert scores_per_document(url, version) == {}


def test_unknown_model_version_is_refused(db):
    url, _ = db
    with pytest.raises(ValueError, match="does not exist"):
        score_unscored(url, 999, KeywordPredictor())


def test_progress_and_summary_table(db, capsys):
    url, version = db
    summary = score_unscored(url, version, KeywordPredictor(), chunk_size=25, progress=True)
    assert "scoring" in capsys.readouterr().err  # tqdm writes to stderr
    assert summary.docs_per_second > 0
    console = Console(record=True, width=80)
    console.print(summary.as_table())
    text = console.export_text()
    assert "documents scored" in text and "50" in text
    assert ScoringSummary.of(0, 0, 0.0).docs_per_second == 0.0


def test_each_run_is_recorded_in_scoring_runs_including_failures(tmp_path):
    from nlp_suite.storage.models import ScoringRun

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        version = ModelVersion(name="m-runs", task="sentiment", path="x", sha256="0" * 64, metrics={})
        session.add(version)
        session.add_all(Document(source="s", external_id=str(i), text=f"text {i}", content_hash=str(i))
                        for i in range(5))
        session.flush()
        version_id = version.id

    class Failing:
        labels = ["negative", "neutral", "positive"]

        def predict_proba(self, texts):
            raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        score_unscored(url, version_id, Failing(), chunk_size=2)
    summary = score_unscored(url, version_id, KeywordPredictor(), chunk_size=2)
    with session_scope(url) as session:
        runs = session.scalars(select(ScoringRun).order_by(ScoringRun.id)).all()
        assert [(r.status, r.documents) for r in runs] == [("failed", 0), ("complete", 5)]
        assert runs[1].finished_at is not None and runs[1].docs_per_second == summary.docs_per_second


def test_partitions_are_disjoint_and_cover_every_document(db):
    url, version = db
    counts = [score_unscored(url, version, KeywordPredictor(), chunk_size=4, partition=Partition(i, 3)).documents
              for i in range(3)]
    assert sum(counts) == len(TEXTS) and all(counts)
    assert scores_per_document(url, version) == {i: 1 for i in document_ids(url)}
    with pytest.raises(ValueError, match="partition index"):
        Partition(3, 3)


def test_scopes_split_fresh_documents_from_backfill_after_a_promotion(db):
    url, old = db
    score_unscored(url, old, KeywordPredictor())
    new = add_model_version(url, "sentiment-v2")
    add_documents(url, ["fresh good news", "fresh bad news"], start=100)
    fresh = score_unscored(url, new, KeywordPredictor(), scope="new")
    assert fresh.documents == 2  # only what no version had scored
    backfill = score_unscored(url, new, KeywordPredictor(), scope="backfill")
    assert backfill.documents == len(TEXTS)
    assert scores_per_document(url, new) == {i: 1 for i in document_ids(url)}
    with pytest.raises(ValueError, match="scope must be one of"):
        score_unscored(url, new, KeywordPredictor(), scope="everything")


class SlowPredictor(KeywordPredictor):
    """Sleeps per chunk, like a big model on a long backfill."""

    def __init__(self, started: threading.Event, seconds: float) -> None:
        super().__init__()
        self.started, self.seconds = started, seconds

    def predict_proba(self, texts):
        self.started.set()
        time.sleep(self.seconds)
        return super().predict_proba(texts)


def test_background_backfill_does_not_block_new_documents(db):
    url, old = db
    add_documents(url, [f"old story {i} good" for i in range(40)], start=1000)
    score_unscored(url, old, KeywordPredictor())
    new = add_model_version(url, "sentiment-v2")
    started = threading.Event()
    backfill = threading.Thread(target=score_unscored, args=(url, new, SlowPredictor(started, 0.3)),
                                kwargs={"scope": "backfill", "chunk_size": 4})
    backfill.start()  # 90 documents / 4 per chunk * 0.3 s: ~7 s of background work
    assert started.wait(10)
    add_documents(url, ["just in: bad news"], start=5000)
    began = time.perf_counter()
    assert score_unscored(url, new, KeywordPredictor(), scope="new").documents == 1
    assert time.perf_counter() - began < 2.0 and backfill.is_alive()  # fresh news did not wait for the backfill
    backfill.join(30)
    assert scores_per_document(url, new) == {i: 1 for i in document_ids(url)}


def test_a_failing_write_stops_the_run_keeps_committed_chunks_and_does_not_hang(db, monkeypatch):
    import nlp_suite.monitoring.scoring as scoring

    url, version = db
    real, calls = scoring._insert_scores, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_insert_scores", flaky)
    with pytest.raises(OSError, match="disk full"):
        score_unscored(url, version, KeywordPredictor(), chunk_size=10)
    assert sum(scores_per_document(url, version).values()) == 20
    monkeypatch.setattr(scoring, "_insert_scores", real)
    assert score_unscored(url, version, KeywordPredictor(), chunk_size=10).documents == 30
    assert set(scores_per_document(url, version).values()) == {1}


def test_the_writer_overlaps_inference(db, monkeypatch):
    """Reading and writing run beside the model: a slow write does not add to a slow prediction."""
    import nlp_suite.monitoring.scoring as scoring

    url, version = db
    real = scoring._insert_scores

    def slow_write(*args, **kwargs):
        time.sleep(0.1)
        return real(*args, **kwargs)

    class SlowPredictor(KeywordPredictor):
        def predict_proba(self, texts):
            time.sleep(0.1)
            return super().predict_proba(texts)

    monkeypatch.setattr(scoring, "_insert_scores", slow_write)
    began = time.perf_counter()
    assert score_unscored(url, version, SlowPredictor(), chunk_size=5).documents == 50
    assert time.perf_counter() - began < 10 * 0.2 * 0.8  # serial would take 10 chunks x (0.1 + 0.1) s


def test_bulk_written_scores_read_back_like_orm_rows(db):
    """The driver-level writer stores timestamps and JSON exactly as the ORM would: they read back typed."""
    url, version = db
    before = datetime.now(timezone.utc)
    score_unscored(url, version, KeywordPredictor(), chunk_size=20)
    with session_scope(url) as session:
        score = session.scalars(select(SentimentScore).order_by(SentimentScore.id)).first()
        assert score.scored_at.tzinfo is not None
        assert before - timedelta(seconds=1) <= score.scored_at <= datetime.now(timezone.utc)
        assert isinstance(score.probabilities, dict) and set(score.probabilities) == set(LABELS)
        assert session.scalar(select(func.count()).where(SentimentScore.scored_at >= before - timedelta(seconds=1))) == 50


def test_run_killed_without_cleanup_is_marked_abandoned_by_the_next_run(db):
    """A SIGKILLed run never closes its row; the next run marks it abandoned once its heartbeat is stale."""
    url, version = db
    now = datetime.now(timezone.utc)
    with session_scope(url) as session:
        session.add_all([
            ScoringRun(model_version_id=version, status="running", documents=7, heartbeat_at=now - timedelta(hours=2)),
            ScoringRun(model_version_id=version, status="running", started_at=now - timedelta(hours=3)),  # no beat
            ScoringRun(model_version_id=version, status="running", heartbeat_at=now),  # alive: a parallel worker
        ])
    score_unscored(url, version, KeywordPredictor(), chunk_size=20, stale_after_minutes=30)
    dead_beat, dead_start, alive, this = scoring_runs(url)
    assert (dead_beat.status, dead_beat.documents, dead_start.status) == ("abandoned", 7, "abandoned")
    assert dead_beat.finished_at is not None and alive.status == "running"
    assert (this.status, this.documents) == ("complete", 50) and this.heartbeat_at is not None
    with pytest.raises(ValueError, match="stale_after_minutes"):
        score_unscored(url, version, KeywordPredictor(), stale_after_minutes=0)


class AwkwardLabelsPredictor:
    """Labels that need JSON and COPY escaping, and probabilities with many digits."""

    labels = ['say "no"', "tab\there", "back\\slash", "new\nline", "naïve"]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        return rng.dirichlet(np.ones(len(self.labels)), size=len(texts)).astype(np.float32)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_stored_scores_are_the_same_on_every_backend(backend, sqlite_url, request) -> None:
    """PostgreSQL formats COPY text by hand (fast path), SQLite binds values: both store the same label and JSON."""
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("pg_url")
    migrate.upgrade(url)
    add_documents(url, [f"document {i}" for i in range(40)])
    version = add_model_version(url)
    predictor = AwkwardLabelsPredictor()
    assert score_unscored(url, version, predictor, chunk_size=16).documents == 40
    with session_scope(url) as session:
        rows = session.execute(select(Document.text, SentimentScore.label, SentimentScore.probabilities,
                                      SentimentScore.scored_at).join(Document)
                               .order_by(Document.id)).all()
    assert len(rows) == 40
    for chunk_start in (0, 16, 32):  # the predictor is called once per chunk with that chunk's texts
        texts = [text for text, *_ in rows[chunk_start:chunk_start + 16]]
        expected = predictor.predict_proba(texts)
        for (_, label, probabilities, scored_at), want in zip(rows[chunk_start:chunk_start + 16], expected):
            assert list(probabilities) == predictor.labels  # keys survive escaping, in label order
            assert [probabilities[k] for k in predictor.labels] == pytest.approx(want.tolist(), abs=1e-7)
            assert label == predictor.labels[int(want.argmax())]
            assert scored_at.tzinfo is not None
