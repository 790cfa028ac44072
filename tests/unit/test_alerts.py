"""Negative-spike alerts: planted bursts are found once, normal days stay quiet, notifications are never lost."""
from __future__ import annotations

import itertools
import logging
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select

from nlp_suite.monitoring import alerts as alerts_module
from nlp_suite.monitoring.alerts import (detect_alerts, load_labels, log_notifier, open_alerts, severity,
                                         webhook_notifier)
from nlp_suite.storage import migrate
from nlp_suite.storage.models import Alert, Document, DocumentEntity, ModelVersion, SentimentScore
from nlp_suite.storage.session import session_scope

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
NORMAL_NEGATIVES = itertools.cycle([1, 1, 0, 2, 1])  # ~20 % of 5 documents a day, with some noise
_ids = itertools.count()


def add_bucket(url: str, version: int, entity: str, start: datetime, total: int, negative: int,
               step: timedelta = DAY, published: bool = True) -> None:
    """Insert `total` scored documents about `entity` spread over one bucket, the first `negative` negative."""
    with session_scope(url) as session:
        for i in range(total):
            n = next(_ids)
            is_negative = i < negative
            p_negative = 0.55 + 0.04 * i if is_negative else 0.1  # distinct, so evidence order is testable
            document = Document(source="news", external_id=str(n), text=f"{entity} story {n}",
                                content_hash=f"{n:064d}", published_at=start + step * i / total if published else None)
            document.entities.append(DocumentEntity(entity=entity))
            session.add(document)
            session.flush()
            session.add(SentimentScore(
                document_id=document.id, model_version_id=version, label="negative" if is_negative else "positive",
                probabilities={"negative": p_negative, "neutral": 0.05, "positive": 0.95 - p_negative},
            ))


def add_normal_days(url: str, version: int, entity: str, first: int, days: int) -> None:
    """~5 documents a day, ~20 % negative, for days first .. first+days-1 after START."""
    for day in range(first, first + days):
        add_bucket(url, version, entity, START + day * DAY, 5, next(NORMAL_NEGATIVES))


class Recorder:
    """Notifier that remembers what it was sent, optionally failing the first `fail` calls."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[dict] = []
        self.fail = fail

    def __call__(self, alert: dict) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("webhook down")
        self.sent.append(alert)


def stored_alerts(url: str) -> list[Alert]:
    with session_scope(url) as session:
        return list(session.scalars(select(Alert).order_by(Alert.bucket_start)))


def make_db(url: str) -> int:
    """Migrate and register a model version; returns its id."""
    migrate.upgrade(url)
    with session_scope(url) as session:
        version = ModelVersion(name="sentiment-v1", task="sentiment", path="/models/v1", sha256="0" * 64)
        session.add(version)
        session.flush()
        return version.id


@pytest.fixture
def db(tmp_path) -> tuple[str, int]:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    return url, make_db(url)


@pytest.fixture
def burst(db) -> tuple[str, int]:
    """ACME: 20 normal days around a day-10 burst of 7/10 negatives; GLOBEX: 21 normal days."""
    url, version = db
    add_normal_days(url, version, "ACME", 0, 10)
    add_bucket(url, version, "ACME", START + 10 * DAY, 10, 7)  # a burst comes with volume: 10 docs, 70 % negative
    add_normal_days(url, version, "ACME", 11, 10)
    add_normal_days(url, version, "GLOBEX", 0, 21)
    return url, version


def test_planted_burst_gives_one_alert_with_evidence(burst):
    url, version = burst
    notifier = Recorder()
    summary = detect_alerts(url, version, notifier=notifier)
    assert (summary.entities_checked, summary.buckets_checked) == (2, 42)
    assert (summary.alerts_created, summary.alerts_updated, summary.notifications_sent) == (1, 0, 1)
    [alert] = stored_alerts(url)
    assert alert.entity == "ACME"
    assert (alert.bucket_start, alert.bucket_end) == (START + 10 * DAY, START + 11 * DAY)
    assert (alert.negative_count, alert.total_count, alert.negative_share) == (7, 10, 0.7)
    assert 0.15 < alert.baseline_share < 0.3
    assert alert.z_score >= 3.0 and alert.p_value <= 0.01 and alert.severity == severity(alert.z_score)
    assert alert.status == "open" and alert.model_version_id == version and alert.notified_at is not None
    evidence = alert.evidence
    assert len(evidence) == 3
    assert [e["negative_probability"] for e in evidence] == pytest.approx([0.79, 0.75, 0.71])  # top 3 of 7
    for item in evidence:
        assert START + 10 * DAY <= datetime.fromisoformat(item["published_at"]) < START + 11 * DAY
        assert item["text"].startswith("ACME story")
    [sent] = notifier.sent
    assert sent["id"] == alert.id and sent["entity"] == "ACME" and sent["evidence"] == evidence


def test_evidence_carries_the_words_that_drove_each_score(burst):
    url, version = burst
    explained: list[str] = []

    def explainer(text: str) -> list[dict]:
        explained.append(text)
        return [{"word": text.split()[-1], "weight": 0.4}]

    detect_alerts(url, version, explainer=explainer)
    [alert] = stored_alerts(url)
    assert len(explained) == 3  # only the evidence documents are explained, not every document
    for item in alert.evidence:
        assert item["words"] == [{"word": item["text"].split()[-1], "weight": 0.4}]


def test_rerun_creates_no_duplicate_and_does_not_renotify(burst):
    url, version = burst
    notifier = Recorder()
    detect_alerts(url, version, notifier=notifier)
    summary = detect_alerts(url, version, notifier=notifier)
    assert (summary.alerts_created, summary.alerts_updated, summary.notifications_sent) == (0, 0, 0)
    assert len(stored_alerts(url)) == 1 and len(notifier.sent) == 1


def test_failing_notifier_is_retried_on_next_run(burst, caplog):
    url, version = burst
    notifier = Recorder(fail=1)
    with caplog.at_level(logging.ERROR, logger=alerts_module.__name__):
        summary = detect_alerts(url, version, notifier=notifier)
    assert (summary.alerts_created, summary.notifications_failed) == (1, 1)
    assert "will retry" in caplog.text
    [alert] = stored_alerts(url)
    assert alert.notified_at is None  # the alert is kept, just not marked as sent
    summary = detect_alerts(url, version, notifier=notifier)
    assert (summary.alerts_created, summary.notifications_sent) == (0, 1)
    assert stored_alerts(url)[0].notified_at is not None and len(notifier.sent) == 1
    detect_alerts(url, version, notifier=notifier)
    assert len(notifier.sent) == 1


def test_consecutive_spike_days_make_one_alert_that_grows(db):
    url, version = db
    add_normal_days(url, version, "ACME", 0, 10)
    add_bucket(url, version, "ACME", START + 10 * DAY, 10, 7)
    notifier = Recorder()
    detect_alerts(url, version, notifier=notifier)
    add_bucket(url, version, "ACME", START + 11 * DAY, 10, 9)  # the next day is worse: the spike goes on
    summary = detect_alerts(url, version, notifier=notifier)
    assert (summary.alerts_created, summary.alerts_updated) == (0, 1)
    [alert] = stored_alerts(url)
    assert (alert.bucket_start, alert.bucket_end) == (START + 10 * DAY, START + 12 * DAY)
    assert (alert.negative_count, alert.total_count) == (16, 20)
    assert len(notifier.sent) == 1  # growing is not a new alert


def test_min_volume_guard(db):
    url, version = db
    for day in range(10):
        add_bucket(url, version, "ACME", START + day * DAY, 5, 0)  # a calm, all-positive entity
    add_bucket(url, version, "ACME", START + 10 * DAY, 2, 2)  # 2 documents, both negative
    assert detect_alerts(url, version, min_volume=3).alerts_created == 0
    assert stored_alerts(url) == []
    # The same day passes the z-score and binomial test, so it is the volume guard that held it back.
    assert detect_alerts(url, version, min_volume=2).alerts_created == 1


def test_hourly_buckets(db):
    url, version = db
    for hour in range(20):
        add_bucket(url, version, "ACME", START + hour * HOUR, 5, next(NORMAL_NEGATIVES), step=HOUR)
    add_bucket(url, version, "ACME", START + 20 * HOUR, 10, 7, step=HOUR)
    for hour in range(21, 30):
        add_bucket(url, version, "ACME", START + hour * HOUR, 5, next(NORMAL_NEGATIVES), step=HOUR)
    summary = detect_alerts(url, version, bucket="hour")
    assert (summary.buckets_checked, summary.alerts_created) == (30, 1)
    [alert] = stored_alerts(url)
    assert (alert.bucket_start, alert.bucket_end) == (START + 20 * HOUR, START + 21 * HOUR)


def test_documents_without_published_at_and_other_model_versions_are_ignored(db):
    url, version = db
    add_normal_days(url, version, "ACME", 0, 10)
    add_bucket(url, version, "ACME", START, 30, 30, published=False)
    with session_scope(url) as session:
        other = ModelVersion(name="sentiment-v2", task="sentiment", path="/models/v2", sha256="1" * 64)
        session.add(other)
        session.flush()
        other_id = other.id
    add_bucket(url, other_id, "ACME", START + 10 * DAY, 10, 10)
    summary = detect_alerts(url, version, fallback=False)
    assert (summary.buckets_checked, summary.alerts_created) == (10, 0)
    assert stored_alerts(url) == []


def add_version(url: str, name: str) -> int:
    with session_scope(url) as session:
        version = ModelVersion(name=name, task="sentiment", path=f"/models/{name}", sha256="2" * 64, status="active")
        session.add(version)
        session.flush()
        return version.id


def test_during_a_rescoring_backfill_older_documents_keep_their_previous_score(db):
    """v2 was just promoted: it scored the fresh burst day, the backfill has not reached the older days yet."""
    url, v1 = db
    add_normal_days(url, v1, "ACME", 0, 10)
    v2 = add_version(url, "sentiment-v2")
    add_bucket(url, v2, "ACME", START + 10 * DAY, 10, 7)
    assert detect_alerts(url, v2, fallback=False).alerts_created == 0  # no baseline left: the spike is missed
    summary = detect_alerts(url, v2)
    assert (summary.buckets_checked, summary.alerts_created) == (11, 1)
    [alert] = stored_alerts(url)
    assert (alert.entity, alert.bucket_start, alert.model_version_id) == ("ACME", START + 10 * DAY, v2)


def test_a_document_rescored_by_the_active_version_counts_once_with_its_new_label(db):
    url, v1 = db
    add_bucket(url, v1, "ACME", START, 4, 4)  # v1: all negative
    v2 = add_version(url, "sentiment-v2")
    with session_scope(url) as session:
        ids = session.scalars(select(Document.id).order_by(Document.id)).all()
        session.add_all(SentimentScore(document_id=i, model_version_id=v2, label="positive",
                                       probabilities={"negative": 0.1, "positive": 0.9}) for i in ids[:3])
    with session_scope(url) as session:
        labels = load_labels(session, v2)
        assert (len(labels), int(labels["negative"].sum())) == (4, 1)  # 3 rescored positive, 1 still v1's negative
        assert len(load_labels(session, v2, fallback=False)) == 3
        assert int(load_labels(session, v1)["negative"].sum()) == 4  # a version's own labels always win


def test_entity_without_history_alerts_only_on_overwhelming_evidence(db):
    url, version = db
    # No history: the smoothed baseline is 50 %, so 5/5 negatives is not enough (z = 2.2) ...
    add_bucket(url, version, "NEWCO", START, 5, 5)
    assert detect_alerts(url, version).alerts_created == 0
    # ... but a first bucket of 10/10 negatives is (z = 3.2, p = 0.001).
    add_bucket(url, version, "FRESH", START, 10, 10)
    assert detect_alerts(url, version).alerts_created == 1
    assert [a.entity for a in stored_alerts(url)] == ["FRESH"]


def test_open_alerts_lists_open_alerts_newest_first(burst):
    url, version = burst
    add_normal_days(url, version, "GLOBEX", 21, 9)
    add_bucket(url, version, "GLOBEX", START + 30 * DAY, 12, 10)
    detect_alerts(url, version)
    assert [a["entity"] for a in open_alerts(url)] == ["GLOBEX", "ACME"]
    [acme] = open_alerts(url, entity="ACME")
    assert acme["bucket_start"] == (START + 10 * DAY).isoformat() and acme["notified_at"] is None
    with session_scope(url) as session:
        session.scalars(select(Alert).where(Alert.entity == "ACME")).one().status = "closed"
    assert open_alerts(url, entity="ACME") == []


def test_no_data_and_bad_arguments(db):
    url, version = db
    summary = detect_alerts(url, version, notifier=Recorder())
    assert (summary.entities_checked, summary.buckets_checked, summary.alerts_created) == (0, 0, 0)
    with pytest.raises(ValueError, match="bucket"):
        detect_alerts(url, version, bucket="week")


def test_severity_thresholds_and_summary_table(burst):
    levels = [severity(z) for z in (3.0, 4.49, 4.5, 5.99, 6.0, 12.0)]
    assert levels == ["low", "low", "medium", "medium", "high", "high"]
    url, version = burst
    console = Console(record=True, width=80)
    console.print(detect_alerts(url, version).as_table())
    assert "alerts created" in console.export_text()


def test_log_notifier_warns(burst, caplog):
    url, version = burst
    with caplog.at_level(logging.WARNING, logger=alerts_module.__name__):
        detect_alerts(url, version, notifier=log_notifier)
    assert "ALERT" in caplog.text and "ACME" in caplog.text


def test_webhook_notifier_retries_then_succeeds():
    responses = iter([503, 429, 200])
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        return httpx.Response(next(responses))

    notify = webhook_notifier("http://hooks.test/alert", retries=3, backoff=0, transport=httpx.MockTransport(handler))
    notify({"entity": "ACME", "z_score": 4.2})
    assert len(seen) == 3 and b'"entity":"ACME"' in seen[0].replace(b" ", b"")


def test_webhook_notifier_gives_up_and_does_not_retry_client_errors():
    calls = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(httpx.ConnectError):
        webhook_notifier("http://hooks.test", retries=2, backoff=0, transport=httpx.MockTransport(down))({})
    assert len(calls) == 3  # the first try and 2 retries

    calls.clear()
    bad_request = httpx.MockTransport(lambda request: calls.append(request) or httpx.Response(400))
    with pytest.raises(httpx.HTTPStatusError):
        webhook_notifier("http://hooks.test", retries=2, backoff=0, transport=bad_request)({})
    assert len(calls) == 1


@pytest.mark.postgres
def test_scoring_and_alerts_on_postgresql(pg_url):
    """The same pipeline on PostgreSQL: ON CONFLICT, tz-aware timestamps and JSON behave as on SQLite."""
    import numpy as np

    from nlp_suite.monitoring.scoring import score_unscored

    url = pg_url
    version = make_db(url)
    add_normal_days(url, version, "ACME", 0, 10)
    add_bucket(url, version, "ACME", START + 10 * DAY, 10, 7)

    class Constant:
        labels = ["negative", "positive"]

        def predict_proba(self, texts):
            return np.tile([0.3, 0.7], (len(texts), 1))

    with session_scope(url) as session:
        v2 = ModelVersion(name="sentiment-v2", task="sentiment", path="/models/v2", sha256="1" * 64)
        session.add(v2)
        session.flush()
        v2_id = v2.id
    assert score_unscored(url, v2_id, Constant(), chunk_size=8).documents == 60
    assert score_unscored(url, v2_id, Constant(), chunk_size=8).documents == 0
    notifier = Recorder()
    assert detect_alerts(url, version, notifier=notifier).alerts_created == 1
    assert detect_alerts(url, version, notifier=notifier).alerts_created == 0
    [alert] = stored_alerts(url)
    assert alert.bucket_start == START + 10 * DAY and len(notifier.sent) == 1
