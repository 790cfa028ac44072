"""Batch-scoring throughput: bare model inference vs end-to-end (read -> score -> write) into SQLite/PostgreSQL.

    python bench/scoring.py                       # 1,000,000 synthetic documents, SQLite + PostgreSQL, fp32 + int8
    python bench/scoring.py --docs 100000 --db sqlite
    python bench/scoring.py --quick               # smoke run (a few thousand documents)

One process, one table: bare inference docs/s (the model on in-memory texts, same chunk size), end-to-end docs/s
through `score_unscored` (the production path), their ratio (target >= 0.8), measured in alternating rounds (a
bare timing, then each of `--rounds` end-to-end partitions followed by a bare timing: both sides average over the
same stretch of a machine whose speed drifts), peak RSS during the run and its growth
from the first to the last tenth (streaming must keep it flat), and the same with dynamic int8 quantization
(`score.precision=int8`: `torch.ao.quantization.quantize_dynamic` on the DropConnect-folded model), whose accuracy change on the Financial PhraseBank test split is reported.
The sentiment model is trained in the run on FPB Sentences_50Agree (or the sample data when the folder is absent).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUBJECTS = ["Contoso Bank", "Fabrikam", "Northwind Traders", "Tailspin Air", "Litware", "the central bank",
            "Adventure Works", "Woodgrove", "Proseware", "Wide World Importers", "Oil prices", "The Dow"]
VERBS = ["beats forecasts", "misses estimates", "cuts jobs", "raises dividend", "faces probe", "holds rates",
         "shares slide", "wins contract", "warns on profit", "announces buyback", "reports record sales",
         "posts quarterly loss", "agrees merger", "rallies", "falls sharply", "expands in Asia"]
TAILS = ["", " after strong quarter", " amid weak demand", " as investors cheer", " on regulatory concerns",
         " despite headwinds", " in volatile trading", " , analysts say"]


def synthetic_texts(count: int, seed: int = 0):
    """Headline-like texts built from a fixed vocabulary (generated lazily: nothing is held in memory)."""
    rng = random.Random(seed)
    for i in range(count):
        yield f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)}{rng.choice(TAILS)} ({rng.randint(1, 99)}%)"


def fill_documents(url: str, count: int, batch: int = 20_000) -> float:
    """Insert `count` synthetic documents in batches; returns seconds."""
    from datetime import datetime, timedelta, timezone

    from nlp_suite.storage.models import Document
    from nlp_suite.storage.session import session_factory

    start, began = datetime(2026, 1, 1, tzinfo=timezone.utc), time.perf_counter()
    factory = session_factory(url)
    rows = []
    for i, text in enumerate(synthetic_texts(count)):
        rows.append({"source": "bench", "external_id": str(i), "text": text, "content_hash": f"{i:064x}",
                     "published_at": start + timedelta(seconds=i), "ingested_at": start})
        if len(rows) == batch:
            with factory.begin() as session:
                session.execute(Document.__table__.insert(), rows)
            rows = []
    if rows:
        with factory.begin() as session:
            session.execute(Document.__table__.insert(), rows)
    settle(url)
    return time.perf_counter() - began


def settle(url: str) -> None:
    """VACUUM ANALYZE after the bulk fill, as autovacuum does to ingested rows in steady state.

    Without it PostgreSQL's first pass over a million just-inserted rows also sets hint bits, builds the visibility
    map and races a concurrent autovacuum, which is fill cost, not scoring cost.
    """
    from sqlalchemy import text

    from nlp_suite.storage.session import get_engine

    with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE" if url.startswith("postgresql") else "ANALYZE"))


class RssSampler:
    """Samples this process's resident memory in a thread: peak, and the peak of each tenth of the run."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.process, self.interval, self.samples = psutil.Process(), interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.process.memory_info().rss)

    def summary(self) -> tuple[float, float]:
        """(peak MiB, MiB growth of the last tenth's peak over the first tenth's)."""
        tenth = max(1, len(self.samples) // 10)
        return max(self.samples) / 2**20, (max(self.samples[-tenth:]) - max(self.samples[:tenth])) / 2**20


def train_model(var: Path, shared_data: str, epochs: int):
    """Train a sentiment model in a throw-away var/ and return (LoadedModel, FPB test split or None)."""
    from nlp_suite.config import load_config
    from nlp_suite.data.datasets import benchmark_splits
    from nlp_suite.pipeline import ensure_database, ensure_sample_data
    from nlp_suite.storage.session import session_scope
    from nlp_suite.training.registry import load_active
    from nlp_suite.training.train import train

    fpb = Path(shared_data) / "financial_phrasebank"
    overrides = [f"paths.var={var}", f"paths.shared_data={shared_data}", "task=sentiment", f"train.epochs={epochs}",
                 "train.progress=false"] + (["data.sentiment.dataset=fpb_50agree"] if fpb.exists() else [])
    cfg = load_config(overrides)
    ensure_database(cfg)
    ensure_sample_data(cfg)
    train(cfg)
    with session_scope(cfg.db.url) as session:
        _, loaded = load_active(session, "sentiment")
    test = benchmark_splits("fpb_50agree", shared_data)["test"] if fpb.exists() else None
    return loaded, test


def accuracy(classifier, test) -> float | None:
    """Accuracy on a labelled split (None without one)."""
    if test is None:
        return None
    predicted = classifier.predict(test.texts)
    return round(sum(label == gold for (label, _), gold in zip(predicted, test.labels)) / len(test.labels), 4)


def bare_inference(classifier, count: int, chunk: int) -> float:
    """docs/s of predict_proba alone on in-memory texts, chunk by chunk like the scorer."""
    texts = list(synthetic_texts(count, seed=1))
    classifier.predict_proba(texts[:chunk])  # warm-up (allocator, thread pool), as the end-to-end run has had
    began = time.perf_counter()
    for i in range(0, len(texts), chunk):
        classifier.predict_proba(texts[i:i + chunk])
    return count / (time.perf_counter() - began)


class NullPredictor:
    """A predictor that costs nothing: scoring with it measures what the database path alone costs."""

    labels = ["negative", "neutral", "positive"]

    def predict_proba(self, texts: list[str]):
        import numpy as np

        return np.full((len(texts), 3), 1.0 / 3.0, dtype=np.float32)


def server_cpu_seconds() -> float:
    """CPU seconds of the local PostgreSQL server's processes (0 when none is visible)."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["name"]):
        try:
            if (process.info["name"] or "").startswith("postgres"):
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:  # a backend that exited while we looked
            continue
    return total


def pipeline_overhead(url: str, work: Path, docs: int, chunk: int) -> dict:
    """CPU per document of scoring with `NullPredictor`: this process (reader, writer, glue) and the DB server."""
    import psutil

    from nlp_suite.monitoring.scoring import score_unscored

    me, version = psutil.Process(), register(url, str(work), "bench-null")
    before, server_before = me.cpu_times(), server_cpu_seconds()
    summary = score_unscored(url, version, NullPredictor(), chunk_size=chunk)
    after, server_after = me.cpu_times(), server_cpu_seconds()
    client = (after.user + after.system) - (before.user + before.system)
    return {"documents": summary.documents, "docs/s": round(summary.docs_per_second),
            "process CPU us/doc": round(1e6 * client / max(1, docs), 1),
            "server CPU us/doc": round(1e6 * (server_after - server_before) / max(1, docs), 1)}


def register(url: str, loaded_path: str, name: str) -> int:
    from nlp_suite.storage.models import ModelVersion
    from nlp_suite.storage.session import session_scope

    with session_scope(url) as session:
        version = ModelVersion(name=name, task="sentiment", path=loaded_path, sha256="0" * 64, status="candidate")
        session.add(version)
        session.flush()
        return version.id


def database_urls(kinds: list[str], work: Path, pg_admin: str) -> dict[str, tuple[str, object]]:
    """kind -> (url, cleanup) for a fresh migrated database of each kind."""
    from sqlalchemy import create_engine, text

    from nlp_suite.storage import migrate

    urls = {}
    if "sqlite" in kinds:
        urls["sqlite"] = (f"sqlite:///{work / 'bench.db'}", None)
    if "postgres" in kinds:
        name = f"nlp_suite_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))

        def drop(name=name, admin=admin) -> None:
            from nlp_suite.storage.session import get_engine

            get_engine(pg_admin.rsplit("/", 1)[0] + f"/{name}").dispose()
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        urls["postgres"] = (pg_admin.rsplit("/", 1)[0] + f"/{name}", drop)
    for url, _ in urls.values():
        migrate.upgrade(url)
    return urls


def measure(url: str, work: Path, db: str, variant: str, classifier, test, args: argparse.Namespace) -> dict:
    """One row: bare and end-to-end docs/s of `classifier` on `url`, measured in alternating rounds.

    The speed of this shared 2-core machine drifts by up to a third within minutes (bare timings taken just before
    and after one long end-to-end pass differed by that much), so one bare timing against one end-to-end pass
    mostly measures the drift. The documents are scored in `--rounds` id-modulo partitions (the production
    `Partition` path, whose reader filters the whole table every round: a cost the end-to-end side pays) with a
    bare timing before the first and after every round; both sides then average over the same stretch of time.
    """
    from nlp_suite.monitoring.scoring import Partition, score_unscored

    rounds, bare_docs = max(1, args.rounds), max(args.chunk, min(args.docs, args.bare_docs) // max(1, args.rounds))
    version = register(url, str(work), f"bench-{variant}")
    bare = [bare_inference(classifier, bare_docs, args.chunk)]
    scored = seconds = 0.0
    with RssSampler() as memory:
        for index in range(rounds):
            partition = Partition(index, rounds) if rounds > 1 else None
            summary = score_unscored(url, version, classifier, chunk_size=args.chunk, progress=args.progress,
                                     partition=partition)
            scored, seconds = scored + summary.documents, seconds + summary.seconds
            bare.append(bare_inference(classifier, bare_docs, args.chunk))
    bare_rate = len(bare) / sum(1.0 / rate for rate in bare)  # docs/s over all bare timings (equal sizes)
    peak, growth = memory.summary()
    return {"db": db, "model": variant, "documents": int(scored), "bare docs/s": round(bare_rate, 1),
            "end-to-end docs/s": round(scored / seconds, 1), "ratio": round(scored / seconds / bare_rate, 3),
            "peak RSS MiB": round(peak), "RSS growth MiB": round(growth, 1),
            "FPB test accuracy": accuracy(classifier, test),
            "bare docs/s min/max": f"{min(bare):.0f}/{max(bare):.0f}"}


def run(args: argparse.Namespace) -> list[dict]:
    import torch

    from nlp_suite.pipeline import inference_model
    from nlp_suite.tasks.classification import TextClassifier

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="nlp-suite-bench-scoring-"))
    loaded, test = train_model(work / "var", args.shared_data, args.epochs)
    variants = {"fp32": inference_model(loaded.model, "fp32")}
    if not args.no_quant:
        variants["int8"] = inference_model(loaded.model, "int8")
    urls = database_urls(args.db, work, args.pg_url)
    rows = []
    try:
        for db, (url, _) in urls.items():
            fill_seconds = fill_documents(url, args.docs)
            print(f"{db}: inserted {args.docs:,} documents in {fill_seconds:.1f} s", flush=True)
            if args.null_model:
                print(f"{db}: database path alone (zero-cost predictor):",
                      pipeline_overhead(url, work, args.docs, args.chunk), flush=True)
            for variant, model in variants.items():
                classifier = TextClassifier(model, loaded.tokenizer, loaded.task.labels, loaded.max_len)
                rows.append(measure(url, work, db, variant, classifier, test, args))
                print(rows[-1], flush=True)
    finally:
        for _, cleanup in urls.values():
            if cleanup:
                cleanup()
    return rows


def print_table(rows: list[dict], args: argparse.Namespace) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Batch scoring, {args.docs:,} documents, chunk {args.chunk}, {args.threads} torch threads")
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) and v < 10 else str(v) for v in row.values()])
    Console().print(table)
    header = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n"
    return header + "".join("| " + " | ".join(str(v) for v in row.values()) + " |\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000, help="synthetic documents per database")
    parser.add_argument("--bare-docs", type=int, default=100_000, help="documents for the bare-inference timings "
                        "(split over the rounds)")
    parser.add_argument("--rounds", type=int, default=5, help="end-to-end rounds (id-modulo partitions), each "
                        "followed by a bare timing, so both sides see the same machine drift")
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--pg-url", default=os.environ.get("NLP_SUITE_TEST_PG",
                                                           "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
                        help="an admin URL; a fresh database is created beside it and dropped afterwards")
    parser.add_argument("--chunk", type=int, default=1024, help="documents per scoring chunk")
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of the benchmark model")
    parser.add_argument("--shared-data", default=os.environ.get("NLP_SUITE_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--null-model", action="store_true", help="first score with a zero-cost predictor and print "
                        "the CPU per document of this process and of the PostgreSQL server (what the DB path costs)")
    parser.add_argument("--no-quant", action="store_true", help="skip the int8 variant")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3,000 documents, 1 epoch")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scoring"))
    args = parser.parse_args(argv)
    if args.quick:
        args.docs, args.bare_docs, args.epochs, args.chunk = 3000, 3000, 1, 256
    from nlp_suite.env import apply_defaults

    apply_defaults()
    rows = run(args)
    markdown = print_table(rows, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(markdown)
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
