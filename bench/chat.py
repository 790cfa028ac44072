"""Chatbot benchmark: intent accuracy, reply selection (retriever vs TF-IDF), CLINC150 fallback, served latency.

    python bench/chat.py                      # full run
    python bench/chat.py --quick              # smoke run on subsamples (< 90 s), small latency check
    python bench/chat.py model.hidden_dim=128 # Hydra overrides go to every train(cfg)

In one process, on `benchmark_splits` (Bitext: stratified 80/20 by intent with seed 0, 10 % of train as validation;
Banking77: official test; CLINC150: official ``val`` as test since the shared copy has no test):

* **intent accuracy**: `train(cfg)` with task=reply on Bitext and Banking77, accuracy on test.
* **reply selection**: the retrieval task (task.pairs=bitext) trained on the 80 % only (blend weights and threshold
  chosen on its validation slice); each held-out request's true response ranked against 9 distractor responses
  of the held-out set, *easy* (other intents) and *hard* (same intent), seed 0: Recall@1/2/5 and MRR, beside a
  TF-IDF cosine baseline (word 1-2 + char 2-5 grams, fit on the train part) and the retriever's own components.
  *ours + intent prior* (what the service ranks with, `nlp_suite.chat.selection`) adds w * log P(passage's intent |
  request), P from the Bitext intent model of *intent accuracy* (registered in the same var), w chosen on the
  validation slice (easy and hard candidate sets sampled there the same way; best mean MRR on `PRIOR_GRID`).
* **CLINC150 fallback**: a reply model on CLINC150 train (oos as a class), the real `ReplyService` with its tuned
  thresholds over a KB of the 150 intents; in-scope accuracy (answered with the right intent) and oos recall (fell
  back) on ``val``.
* **latency**: the Gradio app (`nlp-suite serve`) in a subprocess with the Bitext reply + retrieval models;
  `clients` concurrent gradio_client clients x `messages` each (`submit`, streamed); p50/p95/p99 of the time to the
  first streamed chunk (what the user waits for; the target applies to it), the whole streamed reply (the UI
  pauses `ui.stream_delay_ms` between its doubling chunks on purpose) and errors, twice: *closed loop* (each client
  sends its next message the moment a reply ends: the saturation point of this machine) and *paced* (each client
  first pauses an exponential think time of mean `--think-ms`, like a person reading and typing); the client
  process's CPU per message is printed because the load generator shares the machine's cores with the server;
  model-only latency per message (intent model + retriever) in this process.

Writes ``<out>/chat.md`` and ``<out>/chat.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/chat.py` from anywhere
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

QUICK_OVERRIDES = ["train.epochs=1", "model.embed_dim=32", "model.hidden_dim=32", "model.vocab_size=1000"]
RETRIEVAL_OVERRIDES = ["train.epochs=12", "train.patience=3"]  # the hard case keeps improving past 8
QUICK_LIMIT = 300
DISTRACTORS = 9
TARGETS = {"easy": 0.99, "hard": 0.80, "p99_ms": 150.0}
PRODUCT = "ours + intent prior"  # the reply service's selection (ui.intent_prior_weight): the targets apply to it


# ------------------------------------------------------------------------------------------------- training


def train_in(var: str, shared: str, overrides: Sequence[str], dataset=None):
    """`train(cfg)` in `var` (fresh SQLite there); with `dataset`, exactly those splits (see bench.accuracy)."""
    import contextlib

    from bench.accuracy import injected_splits
    from nlp_suite.config import db_url, load_config
    from nlp_suite.storage import migrate
    from nlp_suite.training.train import train

    cfg = load_config([*overrides, "train.val_fraction=0.1", "train.progress=false", f"paths.var={var}",
                       f"paths.shared_data={shared}"])
    migrate.upgrade(db_url(cfg))
    with injected_splits(dataset) if dataset is not None else contextlib.nullcontext():
        return cfg, train(cfg)


def splits(name: str, shared: str, limit: int | None, test_limit: int | None = None):
    """benchmark_splits of `name` (seed 0, 10 % val); train and val cut to `limit` rows, test to `test_limit`
    (the held-out Bitext set stays whole: every intent needs 9 same-intent distractors)."""
    from bench.accuracy import subsample
    from nlp_suite.data.datasets import LabelledDataset, benchmark_splits

    dataset = benchmark_splits(name, shared, seed=0, val_fraction=0.1)
    cut = {"train": limit, "val": limit, "test": test_limit}
    return LabelledDataset(dataset.name, {k: subsample(v, cut.get(k), 0) for k, v in dataset.splits.items()})


# ------------------------------------------------------------------------------------------------- parts


def intent_accuracy(name: str, shared: str, overrides: Sequence[str], limit: int | None,
                    var: str | None = None) -> dict[str, Any]:
    """Reply (intent) model on `name`: test accuracy as train(cfg) reports it on the held-out split. Registered in
    `var` when given (the served app reuses it), else in a temporary folder."""
    dataset = splits(name, shared, limit)
    with tempfile.TemporaryDirectory(prefix=f"bench-chat-{name}-") as scratch:
        start = time.perf_counter()
        _, result = train_in(var or scratch, shared, ["task=reply", *overrides, f"data.intents={name}"], dataset)
        return {"accuracy": result.metrics["test_accuracy"], "macro_f1": result.metrics["test_macro_f1"],
                "rows": {k: len(v) for k, v in dataset.splits.items()},
                "seconds": round(time.perf_counter() - start, 1)}


def tfidf_scores(train, test, candidates: np.ndarray) -> np.ndarray:
    """(N, 10) TF-IDF cosine (word 1-2 + char 2-5 grams, fit on train requests and responses)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion
    from sklearn.preprocessing import normalize

    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2))])
    features.fit([*train.texts, *train.responses])
    queries, responses = normalize(features.transform(test.texts)), normalize(features.transform(test.responses))
    return np.stack([(responses[row] @ queries[i].T).toarray().ravel() for i, row in enumerate(candidates)])


def intent_model(var: str):
    """The Bitext reply (intent) model that `intent_accuracy("bitext", ..., var)` registered in `var`, as a
    TextClassifier, and its path."""
    from nlp_suite.config import db_url, load_config
    from nlp_suite.storage.session import session_scope
    from nlp_suite.tasks.classification import TextClassifier
    from nlp_suite.training import registry

    with session_scope(db_url(load_config([f"paths.var={var}"]))) as session:
        version, loaded = registry.load_active(session, "reply")
    return TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len), version.path


def eligible_candidates(labels: Sequence[str], hard: bool, k: int = DISTRACTORS, seed: int = 0) -> np.ndarray:
    """`sample_candidates` over the rows that have k distractors of their kind, as row indexes into `labels`: the
    (cut) validation slice can hold intents with fewer than k + 1 rows, which have no hard candidate set."""
    from collections import Counter

    from nlp_suite.tasks.retrieval import sample_candidates

    found = np.asarray(labels, dtype=object)
    counts = Counter(found.tolist())
    keep = np.array([i for i, label in enumerate(found)
                     if (counts[label] - 1 if hard else len(found) - counts[label]) >= k], dtype=np.int64)
    if not len(keep):
        return np.zeros((0, k + 1), dtype=np.int64)
    return keep[sample_candidates(found[keep].tolist(), hard=hard, k=k, seed=seed)]


def selection_inputs(retriever, probabilities: np.ndarray, labels: Sequence[str], split,
                     candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) features and log P(candidate's intent | query) of a split's candidate sets (the retriever indexes the
    split's responses; `probabilities` are the intent model's for the split's requests, in `labels` order)."""
    from nlp_suite.chat.selection import intent_log_prior

    queries = [split.texts[i] for i in candidates[:, 0]]
    intents = np.asarray(split.labels, dtype=object)[candidates]  # a response's intent is its request's
    return retriever.features(queries, candidates), intent_log_prior(probabilities[candidates[:, 0]], labels, intents)


def choose_intent_prior(retriever, classifier, val, corpus: Sequence[str]) -> dict[str, Any]:
    """w of the intent prior with the best mean MRR over easy and hard candidate sets of the validation slice."""
    from nlp_suite.chat.selection import PRIOR_GRID, choose_prior_weight

    retriever.index(val.responses, corpus=corpus, fit_on_passages=False)
    probabilities = classifier.predict_proba(list(val.texts))
    scores, priors, sizes = [], [], {}
    for kind in ("easy", "hard"):
        candidates = eligible_candidates(val.labels, hard=kind == "hard")
        sizes[kind] = len(candidates)
        if not len(candidates):  # a tiny --limit can leave no intent with 10 validation rows
            continue
        features, prior = selection_inputs(retriever, probabilities, classifier.labels, val, candidates)
        scores.append(features @ retriever.weights)
        priors.append(prior)
    weight, mrr = choose_prior_weight(scores, priors, PRIOR_GRID)
    return {"weight": weight, "val_mean_mrr": {f"{w:g}": round(v, 5) for w, v in mrr.items()}, "val_queries": sizes}


def reply_selection(var: str, shared: str, overrides: Sequence[str], limit: int | None) -> dict[str, Any]:
    """Retriever (trained on the 80 %) vs TF-IDF on held-out Bitext request -> response, easy and hard; and the
    retriever with the intent prior of the Bitext intent model already registered in `var` (w chosen on val)."""
    from nlp_suite.chat.selection import prior_scores
    from nlp_suite.tasks.retrieval import FEATURES, Retriever, rank_metrics, sample_candidates
    from nlp_suite.training.checkpoint import load_checkpoint

    dataset = splits("bitext", shared, limit)
    train, test = dataset["train"], dataset["test"]
    corpus = [*train.texts, *train.responses]
    start = time.perf_counter()
    cfg, result = train_in(var, shared, ["task=retrieval", *overrides, "task.pairs=bitext"], dataset)
    train_seconds = time.perf_counter() - start
    retriever = Retriever.from_loaded(load_checkpoint(Path(result.path)))
    classifier, classifier_path = intent_model(var)
    prior = {**choose_intent_prior(retriever, classifier, dataset["val"], corpus), "reply_model_path": classifier_path}
    retriever.index(test.responses, corpus=corpus, fit_on_passages=False)
    probabilities = classifier.predict_proba(list(test.texts))
    out: dict[str, Any] = {"train_seconds": round(train_seconds, 1), "rows": {k: len(v) for k, v in
                                                                               dataset.splits.items()},
                           "weights": dict(zip(FEATURES, retriever.weights.round(3).tolist())),
                           "val": {k: v for k, v in result.metrics.items() if not k.startswith("test_")},
                           "model_path": result.path, "intent_prior": prior}
    for kind in ("easy", "hard"):
        candidates = sample_candidates(test.labels, hard=kind == "hard", k=DISTRACTORS, seed=0)
        features, log_prior = selection_inputs(retriever, probabilities, classifier.labels, test, candidates)
        out[kind] = {"ours": rank_metrics(features @ retriever.weights),
                     PRODUCT: rank_metrics(prior_scores(features @ retriever.weights, log_prior, prior["weight"])),
                     "dense only": rank_metrics(features[:, :, 0]),
                     "interaction only": rank_metrics(features[:, :, 1]),
                     "tfidf": rank_metrics(tfidf_scores(train, test, candidates))}
    return out


def bitext_kb(path: Path, shared: str, limit: int | None) -> Path:
    """A KB from Bitext train: per intent its first response as the answer and its train requests as questions."""
    train = splits("bitext", shared, limit)["train"]
    entries: dict[str, dict[str, Any]] = {}
    for text, label, response in zip(train.texts, train.labels, train.responses):
        entry = entries.setdefault(label, {"intent": label, "answer": response, "questions": []})
        entry["questions"].append(text)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries.values()), encoding="utf-8")
    return path


def clinc_fallback(shared: str, overrides: Sequence[str], limit: int | None) -> dict[str, Any]:
    """CLINC150 val through the real ReplyService (tuned thresholds, fallback on): in-scope accuracy, oos recall."""
    from nlp_suite.chat.knowledge import KnowledgeBase
    from nlp_suite.chat.service import ReplyService
    from nlp_suite.config import db_url
    from nlp_suite.data.datasets import OOS_LABEL
    from nlp_suite.tasks.classification import TextClassifier
    from nlp_suite.training.checkpoint import load_checkpoint

    dataset = splits("clinc150", shared, limit, test_limit=limit)
    with tempfile.TemporaryDirectory(prefix="bench-chat-clinc-") as var:
        cfg, result = train_in(var, shared, ["task=reply", *overrides, "data.intents=clinc150"], dataset)
        loaded = load_checkpoint(Path(result.path))
        kb_path = Path(var) / "clinc_kb.jsonl"
        train = dataset["train"]
        questions: dict[str, list[str]] = {}
        for text, label in zip(train.texts, train.labels):
            if label != OOS_LABEL:  # oos has no answer: predicting it ends in the fallback
                questions.setdefault(label, []).append(text)
        kb_path.write_text("".join(json.dumps({"intent": k, "answer": f"Here is how I can help with {k}.",
                                               "questions": v}) + "\n" for k, v in questions.items()),
                           encoding="utf-8")
        tuned = loaded.task.tuned
        service = ReplyService(TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len),
                               KnowledgeBase(kb_path), db_url(cfg),
                               confidence_threshold=tuned.get("confidence_threshold", 0.5),
                               ambiguity_gap=tuned.get("ambiguity_gap", 0.1))
        test = dataset["test"]
        replies = [service.reply(None, text) for text in test.texts]
    truth = np.asarray(test.labels, dtype=object)
    kinds = np.asarray([r.kind for r in replies], dtype=object)
    intents = np.asarray([r.intent for r in replies], dtype=object)
    inside, oos = truth != OOS_LABEL, truth == OOS_LABEL
    answered_right = (kinds == "answer") & (intents == truth)
    return {"in_scope_accuracy": float(answered_right[inside].mean()),
            "oos_recall": float((kinds[oos] == "fallback").mean()) if oos.any() else None,
            "in_scope_clarify": float((kinds[inside] == "clarify").mean()),
            "in_scope_fallback": float((kinds[inside] == "fallback").mean()),
            "model_accuracy": result.metrics["test_accuracy"], "tuned": tuned,
            "rows": {"in_scope": int(inside.sum()), "oos": int(oos.sum())}}


# ------------------------------------------------------------------------------------------------- latency


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    """Poll `url` until it answers (the app is up) or the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {process.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class _TimedOutputs(list):
    """A gradio_client job's output list that timestamps the first streamed output as it is appended.

    `for _ in job` polls the job every millisecond in each client thread; with 16 clients that polling alone took
    more CPU than the server on this 2-core machine, so the load generator slowed what it measured. The stream
    thread appends each output under the job's lock, so swapping this list in under the same lock loses nothing.
    """

    def __init__(self, existing: list) -> None:
        super().__init__(existing)
        self.first = time.perf_counter() if existing else None

    def append(self, item: Any) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        super().append(item)


def _timed(job) -> _TimedOutputs | None:
    """Install `_TimedOutputs` on a submitted job (None when this gradio_client keeps outputs elsewhere)."""
    communicator = getattr(job, "communicator", None)
    if communicator is None or not isinstance(getattr(communicator.job, "outputs", None), list):
        return None
    with communicator.lock:
        communicator.job.outputs = _TimedOutputs(communicator.job.outputs)
        return communicator.job.outputs


def client_load(url: str, messages: Sequence[str], clients: int, per_client: int, think_ms: float = 0.0,
                seed: int = 0) -> dict[str, Any]:
    """`clients` threads, each its own gradio_client (own session), `per_client` messages: latencies and errors.

    `think_ms` = 0: each client sends its next message as soon as the reply has streamed (closed loop: measures
    saturation). > 0: it first waits an exponentially distributed pause of that mean (seeded), as a person reading
    the reply and typing would (the clients' pauses are independent, so arrivals are roughly Poisson).
    """
    import random

    import ssl

    import certifi
    from gradio_client import Client

    # gradio_client opens a fresh httpx client per request and passes `ssl_verify` as httpx's `verify`: with True
    # each request loads the CA bundle into a new SSL context (77 % of the load generator's CPU when profiled);
    # one context built here and shared keeps the same verification at a fraction of the cost.
    context = ssl.create_default_context(cafile=certifi.where())
    latencies: list[float] = []
    first_chunks: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def run(number: int) -> None:
        try:
            client = Client(url, verbose=False, ssl_verify=context)
        except Exception as error:  # noqa: BLE001 - counted, reported
            with lock:
                errors.extend([f"connect: {error}"] * per_client)
            barrier.wait()
            return
        barrier.wait()
        pause = random.Random(seed * 1000 + number)
        for i in range(per_client):
            if think_ms > 0:
                time.sleep(pause.expovariate(1000.0 / think_ms))
            text = messages[(number * per_client + i) % len(messages)]
            start, first = time.perf_counter(), None
            try:
                job = client.submit(text, False, api_name="/respond")
                timed = _timed(job)
                if timed is None:  # fall back to iterating (polls, but still times the first chunk)
                    for _ in job:
                        first = first if first is not None else time.perf_counter()
                    reply = job.outputs()[-1] if job.outputs() else ""
                else:
                    reply = job.result(timeout=120)  # waits on the future: no polling
                    first = timed.first
                reply = reply[0] if isinstance(reply, (list, tuple)) else reply
                ok = isinstance(reply, str) and bool(reply) and "went wrong" not in reply
            except Exception as error:  # noqa: BLE001
                ok, reply = False, str(error)
            end = time.perf_counter()
            with lock:
                if ok:
                    latencies.append((end - start) * 1000.0)
                    first_chunks.append(((first or end) - start) * 1000.0)
                else:
                    errors.append(str(reply)[:200])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started_cpu, start = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, client_cpu = time.perf_counter() - start, time.process_time() - started_cpu
    found = np.asarray(first_chunks) if first_chunks else np.zeros(1)
    whole = np.asarray(latencies) if latencies else np.zeros(1)
    return {"clients": clients, "messages_per_client": per_client, "think_ms": think_ms,
            "requests": clients * per_client,
            "errors": len(errors), "error_examples": errors[:3], "p50_ms": float(np.percentile(found, 50)),
            "p95_ms": float(np.percentile(found, 95)), "p99_ms": float(np.percentile(found, 99)),
            "full_reply_p50_ms": float(np.percentile(whole, 50)), "full_reply_p99_ms": float(np.percentile(whole, 99)),
            "throughput_per_s": round(len(latencies) / wall, 1),
            "client_cpu_ms_per_message": round(1000.0 * client_cpu / max(1, clients * per_client), 1)}


def model_latency(var: str, faq: Path, texts: Sequence[str]) -> dict[str, Any]:
    """Per message, in this process: intent model + retriever search (what the service computes per turn)."""
    from nlp_suite.chat.service import ReplyService
    from nlp_suite.config import load_config

    cfg = load_config([f"paths.var={var}", f"data.faq={faq}"])
    service = ReplyService.from_config(cfg)
    service.retriever and service._index()
    timings = []
    for text in texts:
        start = time.perf_counter()
        service._rank(text)
        if service.retriever is not None:
            service.retriever.search(text)
        timings.append((time.perf_counter() - start) * 1000.0)
    found = np.asarray(timings)
    return {"messages": len(timings), "mean_ms": float(found.mean()), "p50_ms": float(np.percentile(found, 50)),
            "p99_ms": float(np.percentile(found, 99)), "retriever": service.retriever is not None}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_server_cpu(pid: int, load, *args, **kwargs) -> dict[str, Any]:
    """Run `load(*args, **kwargs)` and add the server process's CPU ms per message spent meanwhile."""
    import psutil

    server = psutil.Process(pid)
    before = server.cpu_times()
    result = load(*args, **kwargs)
    after = server.cpu_times()
    spent = (after.user + after.system) - (before.user + before.system)
    result["server_cpu_ms_per_message"] = round(1000.0 * spent / max(1, result["requests"]), 1)
    return result


def latency(var: str, shared: str, limit: int | None, clients: int, per_client: int, think_ms: float = 0.0,
            server_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The Bitext reply and retrieval models already active in `var`, served by `nlp-suite serve`, over a KB of the
    Bitext intents; clients hit it."""
    faq = bitext_kb(Path(var) / "bitext_kb.jsonl", shared, limit)
    texts = splits("bitext", shared, limit)["test"].texts
    model_only = model_latency(var, faq, texts[:200])
    port = free_port()
    env = {**os.environ, "NLP_SUITE_VAR": var, "PREFECT_HOME": str(Path(var) / "prefect")}
    command = [str(Path(sys.executable).parent / "nlp-suite"), "serve", f"ui.port={port}", f"paths.var={var}",
               f"data.faq={faq}", *server_overrides]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, server)
        client_load(url, texts, 1, 2)  # warm-up (first request compiles/loads lazily)
        served = with_server_cpu(server.pid, client_load, url, texts, clients, per_client)
        paced = (with_server_cpu(server.pid, client_load, url, texts, clients, per_client, think_ms=think_ms)
                 if think_ms > 0 else None)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return {"served": served, "paced": paced, "model_only": model_only, "server_overrides": list(server_overrides)}


# ------------------------------------------------------------------------------------------------- report


def mark(value: float | None, target: float, higher: bool = True) -> str:
    if value is None:
        return "-"
    ok = value >= target - 1e-12 if higher else value <= target + 1e-12
    return f"{value:.3f} {'✓' if ok else '✗'}"


def rows(report: dict[str, Any]) -> list[list[str]]:
    """(section, metric, value, baseline / note) table rows."""
    out = []
    for name, found in report.get("intents", {}).items():
        out.append(["intent accuracy", f"{name} test", f"{found['accuracy']:.3f}", f"macro-F1 {found['macro_f1']:.3f}"])
    selection = report.get("selection")
    if selection:
        for kind in ("easy", "hard"):
            found = selection[kind]
            product = found.get(PRODUCT, found["ours"])  # reports from before the intent prior have only "ours"
            for metric in ("recall@1", "recall@2", "recall@5", "mrr"):
                value = mark(product[metric], TARGETS[kind]) if metric == "recall@1" else f"{product[metric]:.3f}"
                parts = [f"retriever only {found['ours'][metric]:.3f}"] if PRODUCT in found else []
                parts += [f"TF-IDF {found['tfidf'][metric]:.3f}", f"dense {found['dense only'][metric]:.3f}",
                          f"interaction {found['interaction only'][metric]:.3f}"]
                out.append([f"reply selection ({kind})", metric, value, " / ".join(parts)])
        prior = selection.get("intent_prior")
        if prior:
            out.append(["reply selection", "intent prior weight w", f"{prior['weight']:g}",
                        f"ours = retriever + w * log P(response's intent given the request), w chosen on validation "
                        f"({prior['val_queries']} queries): mean MRR easy+hard by w {prior['val_mean_mrr']}"])
    clinc = report.get("clinc")
    if clinc:
        out.append(["CLINC150 val, fallback on", "in-scope accuracy", f"{clinc['in_scope_accuracy']:.3f}",
                    f"clarify {clinc['in_scope_clarify']:.3f}, fallback {clinc['in_scope_fallback']:.3f}; "
                    f"threshold {clinc['tuned'].get('confidence_threshold')}, gap {clinc['tuned'].get('ambiguity_gap')}"])
        out.append(["CLINC150 val, fallback on", "oos recall",
                    "-" if clinc["oos_recall"] is None else f"{clinc['oos_recall']:.3f}", f"rows {clinc['rows']}"])
    lat = report.get("latency")
    if lat:
        for key, part in (("served", "closed loop"), ("paced", "paced")):
            served = lat.get(key)
            if not served:
                continue
            section = f"latency ({part}, gradio_client)"
            think = (f", mean think time {served['think_ms']:.0f} ms" if served.get("think_ms")
                     else ", no think time (saturation)")
            note = (f"{served['clients']} clients x {served['messages_per_client']} messages{think}, "
                    f"{served['throughput_per_s']}/s, CPU ms/message: client "
                    f"{served.get('client_cpu_ms_per_message', '-')}, server {served.get('server_cpu_ms_per_message', '-')}")
            out.append([section, "first chunk p50 / p95 ms", f"{served['p50_ms']:.0f} / {served['p95_ms']:.0f}", note])
            out.append([section, "first chunk p99 ms", mark(served["p99_ms"], TARGETS["p99_ms"], False),
                        f"errors {served['errors']}"])
            out.append([section, "whole streamed reply p50 / p99 ms",
                        f"{served['full_reply_p50_ms']:.0f} / {served['full_reply_p99_ms']:.0f}",
                        "includes the UI's deliberate pause between streamed chunks (ui.stream_delay_ms)"])
        model = lat["model_only"]
        out.append(["latency (model only)", "mean / p99 ms per message", f"{model['mean_ms']:.1f} / {model['p99_ms']:.1f}",
                    "intent model + retriever" if model["retriever"] else "intent model"])
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Chat benchmark", "", f"Command: `{report['command']}`", "",
             f"{report['device']}; torch threads {report['torch_threads']}; total {report['total_seconds']:.0f} s; "
             f"load average before -> after {report['load_average']}"
             + (" — **quick smoke run, not a benchmark result**" if report["quick"] else ""), "",
             "| part | metric | ours | baselines / notes |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows(report)]
    lines += ["", "Targets: reply selection R@1 ≥ 0.99 easy, ≥ 0.80 hard (retriever + intent prior, as the service "
              "ranks); served p99 ≤ 150 ms with 0 errors.", ""]
    return "\n".join(lines)


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(200, Console().width), soft_wrap=True)
    table = Table(title="Chat benchmark" + (" [quick]" if report["quick"] else ""))
    for column in ("part", "metric", "ours", "baselines / notes"):
        table.add_column(column, overflow="fold")
    for row in rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"device: {report['device']}; total wall time {report['total_seconds']:.0f} s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"subsamples ({QUICK_LIMIT} rows), one epoch, small "
                        "model, latency 2 clients x 3 messages")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows per split")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (default 16, quick 2)")
    parser.add_argument("--messages", type=int, default=None, help="messages per client (default 50, quick 3)")
    parser.add_argument("--think-ms", type=float, default=1000.0, help="mean pause before each message in the "
                        "paced latency run (exponential, seeded; 0 = closed loop only)")
    parser.add_argument("--server", action="append", default=[], metavar="OVERRIDE",
                        help="Hydra override for the served app only, e.g. --server ui.torch_threads=1")
    parser.add_argument("--var", default=None, help="keep the trained Bitext models in this folder (default: a "
                        "temporary one) so that --latency-only can serve them again without training")
    parser.add_argument("--latency-only", action="store_true", help="only the served-latency part, with the models "
                        "a previous run left in --var")
    parser.add_argument("--no-latency", action="store_true", help="skip the served-app latency part")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for chat.md/.json")
    parser.add_argument("--shared-data", default=None, help="datasets root (default: config paths.shared_data)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every train(cfg), e.g. model.hidden_dim=128")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.latency_only and not (args.var and (Path(args.var) / "models" / "reply").is_dir()):
        raise SystemExit("--latency-only needs --var DIR holding the models of an earlier run (models/reply missing)")
    started, load_before = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    import torch

    from nlp_suite.config import load_config

    overrides = [*(QUICK_OVERRIDES if args.quick else []), *args.overrides]
    retrieval = [*([] if args.quick else RETRIEVAL_OVERRIDES), *overrides]
    limit = args.limit if args.limit is not None else (QUICK_LIMIT if args.quick else None)
    clients = args.clients or (2 if args.quick else 16)
    per_client = args.messages or (3 if args.quick else 50)
    base = load_config(overrides)
    shared = str(Path(args.shared_data).resolve()) if args.shared_data else str(base.paths.shared_data)
    report: dict[str, Any] = {"intents": {}}
    with (contextlib.nullcontext(args.var) if args.var else tempfile.TemporaryDirectory(prefix="bench-chat-")) as var:
        if not args.latency_only:
            for name in ("bitext", "banking77"):
                print(f"[intents] {name}", file=sys.stderr, flush=True)
                report["intents"][name] = intent_accuracy(name, shared, overrides, limit,
                                                          var if name == "bitext" else None)
            print("[selection] retrieval on bitext", file=sys.stderr, flush=True)
            report["selection"] = reply_selection(var, shared, retrieval, limit)
        if not args.no_latency:
            print(f"[latency] {clients} clients x {per_client}", file=sys.stderr, flush=True)
            report["latency"] = latency(var, shared, limit, clients, per_client, args.think_ms, args.server)
    if not args.latency_only:
        print("[clinc] fallback on val", file=sys.stderr, flush=True)
        report["clinc"] = clinc_fallback(shared, overrides, limit)
    report.update({
        "command": shlex.join(["python", "bench/chat.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick, "limit": limit, "overrides": overrides, "retrieval_overrides": retrieval,
        "device": f"cpu ({os.cpu_count()} cores), {platform.platform()}", "torch_threads": torch.get_num_threads(),
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_average": [load_before, [round(x, 2) for x in os.getloadavg()]]})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chat.json").write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")
    (out / "chat.md").write_text(markdown(report), encoding="utf-8")
    print_table(report)
    print(f"wrote {out / 'chat.md'} and {out / 'chat.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
