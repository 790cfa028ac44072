"""Scoring with the real trained model: SIGKILL mid-run then re-run, and Dask partitions on PostgreSQL.

Both check the same promise: exactly one score per document and model version, none missing.
"""
from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nlp_suite import pipeline
from nlp_suite.config import load_config
from nlp_suite.storage.models import Document, ModelVersion, ScoringRun, SentimentScore
from nlp_suite.storage.session import session_scope
from tests.helpers import train_single_threaded

pytestmark = pytest.mark.slow

SUBJECTS = ["Contoso Bank", "Fabrikam", "Northwind", "Tailspin", "Litware", "the central bank", "Adventure Works"]
VERBS = ["beats forecasts", "misses estimates", "cuts jobs", "raises dividend", "faces probe", "holds rates",
         "shares slide", "wins contract", "warns on profit", "announces buyback"]


def write_extra_documents(path: Path, count: int) -> None:
    """Headline-like documents so a scoring run lasts long enough to be killed in the middle."""
    rng = random.Random(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "published_at"])
        for i in range(count):
            writer.writerow([f"x{i}", f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} as {rng.choice(VERBS)}",
                             f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:00:00+00:00"])


def prepared(tmp_path: Path, url: str, extra: int) -> list[str]:
    """A migrated database with the sample documents plus `extra` more and an active sentiment model."""
    overrides = [f"paths.var={tmp_path}", f"db.url={url}", "train.epochs=1", "train.progress=false"]
    cfg = load_config(overrides)
    pipeline.ensure_database(cfg)
    pipeline.ensure_sample_data(cfg)
    extra_csv = tmp_path / "extra.csv"
    write_extra_documents(extra_csv, extra)
    for source in [*cfg.data.documents, {"path": str(extra_csv), "source": "extra"}]:
        pipeline.ingest_documents(cfg, dict(source))
    assert train_single_threaded(load_config(overrides + ["task=sentiment"])).promoted
    return overrides


def score_counts(url: str) -> tuple[int, int, int]:
    """(documents, score rows of the active version, distinct documents among them)."""
    with session_scope(url) as session:
        version = session.scalar(select(ModelVersion.id).where(ModelVersion.status == "active",
                                                               ModelVersion.task == "sentiment"))
        documents = session.scalar(select(func.count()).select_from(Document))
        where = SentimentScore.model_version_id == version
        rows = session.scalar(select(func.count()).select_from(SentimentScore).where(where))
        distinct = session.scalar(select(func.count(func.distinct(SentimentScore.document_id))).where(where))
    return documents, rows, distinct


def test_sigkill_mid_run_then_rerun_leaves_exactly_one_score_per_document(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    overrides = prepared(tmp_path, url, extra=6000) + ["score.chunk_size=8"]
    script = ("import sys; from nlp_suite.env import apply_defaults; apply_defaults(); "
              "from nlp_suite.config import load_config; from nlp_suite import pipeline; "
              "pipeline.score_documents(load_config(sys.argv[1:]))")
    worker = subprocess.Popen([sys.executable, "-c", script, *overrides], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    try:
        while score_counts(url)[1] < 400:  # let it commit some chunks, then kill it without warning
            assert worker.poll() is None, "the scoring process ended before it could be killed"
            assert time.monotonic() < deadline, "scoring never got going"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(30)
    assert worker.returncode == -signal.SIGKILL
    documents, rows, distinct = score_counts(url)
    assert 400 <= rows < documents and rows == distinct  # killed mid-run; what was committed is whole

    pipeline.score_documents(load_config(overrides))
    assert score_counts(url) == (documents, documents, documents)
    with session_scope(url) as session:
        statuses = sorted(session.scalars(select(ScoringRun.status)))
    assert statuses == ["complete", "running"]  # the killed run stays visible as never finished


@pytest.mark.postgres
@pytest.mark.prefect
def test_dask_local_cluster_scores_partitions_exactly_once_on_postgresql(prefect_server, pg_url, tmp_path,
                                                                         monkeypatch):
    from prefect.settings import PREFECT_API_URL

    from flows.score import score

    overrides = prepared(tmp_path, pg_url, extra=1500)
    # Dask workers are separate processes: they find the Prefect API and the test's var/ through the environment.
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    dask = overrides + ["score.task_runner=dask", "score.partitions=4", "score.dask.n_workers=2",
                        "score.chunk_size=64"]
    first = score(dask)
    documents = score_counts(pg_url)[0]
    assert first["documents"] == documents and first["partitions"] == 4
    assert score_counts(pg_url) == (documents, documents, documents)
    again = score(dask)
    assert again["documents"] == 0
    with session_scope(pg_url) as session:
        runs = session.scalars(select(ScoringRun)).all()
    assert len(runs) == 8 and {run.status for run in runs} == {"complete"}
