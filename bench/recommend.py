"""Offline recommendation benchmark on MovieLens latest-small: our two-tower model against three baselines.

    python bench/recommend.py                      # full run (trains our model; minutes on 2 CPU cores)
    python bench/recommend.py --quick              # smoke run: 60 users, tiny model, one epoch (< 60 s)
    python bench/recommend.py task.user_dim=128 train.epochs=6   # Hydra overrides go to load_config

Protocol (all models in this one process, on the same split and the same sampled negatives):

* **Split**: per user, ratings in time order (ties keep file order); the last 20 % (rounded) are test, the rest
  train. A rating >= 4 is a positive. Users without a test positive are not scored.
* **Candidates**: every catalog item except the user's train items (any rating).
* **Metrics** (mean over users): nDCG@5, nDCG@10, HitRate@10, MRR (first test positive), AUC of each test
  positive against 100 negatives drawn once (seed 0) from the user's candidates that are not test positives
  (ties count half; averaged per user first). **Cold-start nDCG@10**: the same full ranking, relevant = the
  user's test positives that no train rating touches (users with at least one), beside its chance value
  (the expected nDCG@10 of a random ranking of the same candidates). Ties in a ranking go against the relevant
  item, so a constant score cannot look good.
* **Baselines** (`nlp_suite.recommend.baselines`, fit on the train positives): most-popular, item-kNN (cosine on
  co-occurrence, all neighbours), BPR-MF (64 d, 20 epochs, Adam lr 0.005).
* **Ours**: `RecommendTask` trained with the generic loop on the train part only; its early-stopping validation
  is each user's last train positive (never test). Item text = title + genres + users' tags (`movielens_frames`).
* **Cost**: train seconds, and seconds to produce the top 10 for every user (scoring + exclusion + top-k).

Writes ``<out>/recommend.md`` and ``<out>/recommend.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/recommend.py` from anywhere
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import sparse  # noqa: E402

from nlp_suite.recommend import baselines  # noqa: E402
from nlp_suite.tasks.recommend_metrics import hit_rate_at_k, ndcg_at_k  # noqa: E402

log = logging.getLogger("bench.recommend")

DATASET = "movielens_latest_small"
TEST_FRACTION = 0.2
POSITIVE_RATING = 4.0
AUC_NEGATIVES = 100
REFERENCE = {"most-popular": 0.078, "item-kNN": 0.109, "BPR-MF": 0.088}  # nDCG@10 quoted in the issue
TARGET_NDCG = 0.14
QUICK_USERS = 60
QUICK_OVERRIDES = ["train.epochs=1", "model.embed_dim=16", "model.hidden_dim=16", "model.vocab_size=500",
                   "model.max_len=16", "task.user_dim=16", "task.history=5", "task.id_embedding=true",
                   "task.long_term=true", "++train.progress=false"]
# Ours on MovieLens: shorter texts than the default max_len (title + genres + the most used tags), id vectors
# for warm items, the long-term user part, 16 negatives; 512-example batches share most items, so an epoch
# encodes ~4x fewer item texts than at 128 (5.7 min per epoch on a shared 2-core machine).
FULL_OVERRIDES = ["model.max_len=32", "task.id_embedding=true", "task.long_term=true", "task.negatives=16",
                  "train.epochs=5", "task.train_overrides.batch_size=512", "++train.progress=false"]
HEADER = ("model", "nDCG@5", "nDCG@10", "HR@10", "MRR", "AUC(100 neg)", "cold nDCG@10", "train s", "top-10 s")


# ------------------------------------------------------------------------------------------------- data

@dataclass
class Split:
    """The per-user temporal split, items indexed as in the catalog (movies.csv order)."""

    items: pd.DataFrame  # catalog items (movielens_frames), row i = item index i
    train: pd.DataFrame  # interactions frame rows (user_id, item_id, event, value, occurred_at) + user, item
    test: pd.DataFrame
    users: list[str]  # user index -> external id
    seen: sparse.csr_matrix  # (U, I) train items of each user (any rating): never candidates
    train_positive: sparse.csr_matrix  # (U, I) train positives: what the baselines fit
    relevant: dict[int, np.ndarray]  # user -> test positive item indexes
    cold_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # no train rating

    @property
    def shape(self) -> tuple[int, int]:
        return self.seen.shape


def load_movielens(folder: Path, users_limit: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(items, interactions) frames of the adapter; optionally a random subset of users (same catalog)."""
    from nlp_suite.data.catalog import movielens_frames

    items, interactions = movielens_frames(folder)
    if users_limit:
        everyone = sorted(interactions["user_id"].unique(), key=int)
        chosen = set(np.random.default_rng(seed).choice(everyone, size=min(users_limit, len(everyone)),
                                                        replace=False))
        interactions = interactions[interactions["user_id"].isin(chosen)]
    return items, interactions.reset_index(drop=True)


def temporal_split(items: pd.DataFrame, interactions: pd.DataFrame, test_fraction: float = TEST_FRACTION) -> Split:
    """Each user's last `test_fraction` of ratings by time (rounded) is test, the rest train."""
    index = {item: i for i, item in enumerate(items["id"])}
    frame = interactions.assign(item=interactions["item_id"].map(index), order=np.arange(len(interactions)))
    users = sorted(frame["user_id"].unique(), key=lambda u: (len(str(u)), str(u)))
    user_index = {user: u for u, user in enumerate(users)}
    frame["user"] = frame["user_id"].map(user_index)
    frame = frame.sort_values(["user", "occurred_at", "order"], kind="stable")
    position = frame.groupby("user").cumcount()
    size = frame.groupby("user")["item"].transform("size")
    is_test = position >= size - np.round(test_fraction * size)
    train, test = frame[~is_test], frame[is_test]
    shape = (len(users), len(items))
    positive = train[train["value"] >= POSITIVE_RATING]
    seen = baselines.interaction_matrix(train["user"].to_numpy(), train["item"].to_numpy(), *shape)
    train_positive = baselines.interaction_matrix(positive["user"].to_numpy(), positive["item"].to_numpy(), *shape)
    test_positive = test[test["value"] >= POSITIVE_RATING]
    relevant = {int(u): np.unique(group.to_numpy()) for u, group in test_positive.groupby("user")["item"]}
    cold = np.setdiff1d(np.arange(len(items)), train["item"].unique())
    return Split(items=items, train=train, test=test, users=[str(u) for u in users], seen=seen,
                 train_positive=train_positive, relevant=relevant, cold_items=cold)


def sample_auc_negatives(split: Split, seed: int = 0, count: int = AUC_NEGATIVES) -> dict[int, np.ndarray]:
    """user -> (P, count) negatives per test positive: candidates (not train items) that are not test positives."""
    rng = np.random.default_rng(seed)
    out: dict[int, np.ndarray] = {}
    n_items = split.shape[1]
    for user in sorted(split.relevant):
        blocked = np.zeros(n_items, dtype=bool)
        blocked[split.seen[user].indices] = True
        blocked[split.relevant[user]] = True
        pool = np.flatnonzero(~blocked)
        out[user] = rng.choice(pool, size=(len(split.relevant[user]), count), replace=True)
    return out


# ------------------------------------------------------------------------------------------------- metrics

def chance_ndcg(relevant: int, candidates: int, k: int = 10) -> float:
    """Expected nDCG@k of a uniformly random ranking with `relevant` relevant items among `candidates`."""
    dcg = sum((relevant / candidates) / math.log2(i + 2) for i in range(min(k, candidates)))
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, relevant)))
    return dcg / ideal


def ranking(scores: np.ndarray, candidates: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Candidate item indexes best first; among equal scores relevant items go last (ties count against them)."""
    is_relevant = np.isin(candidates, relevant)
    order = np.lexsort((is_relevant, -scores[candidates]))
    return candidates[order]


def evaluate(scores: np.ndarray, split: Split, negatives: dict[int, np.ndarray]) -> dict[str, float]:
    """The protocol's metrics of one (U, I) score matrix."""
    rows: dict[str, list[float]] = {key: [] for key in ("ndcg@5", "ndcg@10", "hit@10", "mrr", "auc")}
    cold_ndcg, cold_chance = [], []
    cold = set(split.cold_items.tolist())
    all_items = np.arange(split.shape[1])
    for user, relevant in split.relevant.items():
        row = scores[user]
        candidates = np.setdiff1d(all_items, split.seen[user].indices, assume_unique=True)
        ranked = ranking(row, candidates, relevant)
        top = ranked[:10].tolist()
        wanted = set(relevant.tolist())
        rows["ndcg@5"].append(ndcg_at_k(top, wanted, 5))
        rows["ndcg@10"].append(ndcg_at_k(top, wanted, 10))
        rows["hit@10"].append(hit_rate_at_k(top, wanted, 10))
        first = int(np.flatnonzero(np.isin(ranked, relevant))[0])
        rows["mrr"].append(1.0 / (first + 1))
        positive_scores = row[relevant][:, None]  # (P, 1)
        negative_scores = row[negatives[user]]  # (P, 100)
        rows["auc"].append(float(((positive_scores > negative_scores) + 0.5 * (positive_scores == negative_scores))
                                 .mean()))
        cold_relevant = wanted & cold
        if cold_relevant:
            cold_ranked = ranking(row, candidates, np.array(sorted(cold_relevant)))[:10].tolist()
            cold_ndcg.append(ndcg_at_k(cold_ranked, cold_relevant, 10))
            cold_chance.append(chance_ndcg(len(cold_relevant), len(candidates)))
    out = {key: float(np.mean(values)) if values else 0.0 for key, values in rows.items()}
    out["users"] = len(split.relevant)
    out["cold_ndcg@10"] = float(np.mean(cold_ndcg)) if cold_ndcg else 0.0
    out["cold_chance_ndcg@10"] = float(np.mean(cold_chance)) if cold_chance else 0.0
    out["cold_users"] = len(cold_ndcg)
    return out


def timed_top10(score_fn: Callable[[], np.ndarray], split: Split) -> tuple[np.ndarray, float]:
    """Scores of every user and the seconds to turn them into each user's top 10 unseen items."""
    started = time.perf_counter()
    scores = score_fn()
    baselines.top_k(scores, split.seen, 10)
    return scores, time.perf_counter() - started


# ------------------------------------------------------------------------------------------------- models

def run_baselines(split: Split, bpr: baselines.BPRConfig) -> dict[str, dict[str, Any]]:
    """Fit and score the three baselines: {name: {'scores', 'train_seconds', 'top10_seconds'}}."""
    out: dict[str, dict[str, Any]] = {}
    x = split.train_positive
    started = time.perf_counter()
    counts = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
    fit_seconds = time.perf_counter() - started
    scores, seconds = timed_top10(lambda: np.broadcast_to(counts, x.shape).copy(), split)
    out["most-popular"] = {"scores": scores, "train_seconds": fit_seconds, "top10_seconds": seconds}
    started = time.perf_counter()
    similarity = baselines.item_similarity(x)
    fit_seconds = time.perf_counter() - started
    scores, seconds = timed_top10(lambda: np.asarray((x @ similarity).todense(), dtype=np.float32), split)
    out["item-kNN"] = {"scores": scores, "train_seconds": fit_seconds, "top10_seconds": seconds}
    model = baselines.bpr_mf(x, bpr)
    scores, seconds = timed_top10(lambda: baselines.bpr_scores(model), split)
    out["BPR-MF"] = {"scores": scores, "train_seconds": model.seconds, "top10_seconds": seconds}
    return out


def run_ours(split: Split, overrides: Sequence[str], var: str) -> dict[str, Any]:
    """Train RecommendTask on the train part (val = each user's last train positive) and score every item."""
    import torch

    from nlp_suite.config import load_config
    from nlp_suite.data.catalog import read_interactions, read_items
    from nlp_suite.models.encoder import Encoder
    from nlp_suite.tasks.recommend import RecommendTask, encode_token_ids, encode_users
    from nlp_suite.text.tokenizer import TextTokenizer
    from nlp_suite.training.loop import fit
    from nlp_suite.training.train import build_task, encoder_config, fit_config

    cfg = load_config(["task=recommend", f"paths.var={var}", *overrides])
    torch.manual_seed(int(cfg.seed))
    started = time.perf_counter()
    task, _ = build_task(cfg)
    assert isinstance(task, RecommendTask)
    items, _ = read_items(split.items)
    columns = ["user_id", "item_id", "event", "value", "occurred_at"]
    train_events, _ = read_interactions(split.train[columns])
    data = task.split_sequences(items, train_events)  # train/val both from the train part
    tokenizer = TextTokenizer.train(task.corpus(data), int(cfg.model.vocab_size))
    task.prepare(data, tokenizer, int(cfg.model.max_len))
    model = task.build_model(Encoder(encoder_config(cfg, tokenizer.vocab_size)))
    result = fit(model, task, fit_config(cfg))
    train_seconds = time.perf_counter() - started
    # Each user's last train positives, oldest first (users without any keep an empty history: cold users).
    position = {user: u for u, user in enumerate(split.users)}
    sequences: list[list[int]] = [[] for _ in split.users]
    for u, user in enumerate(data["users"]):
        sequences[position[user]] = task.recent_history(u)

    def score() -> np.ndarray:
        with torch.no_grad():
            vectors = encode_token_ids(model, task.item_tokens, task.pad_id, item_index=task.warm_index())  # (I, D)
            users = encode_users(model, [vectors[h] for h in sequences])  # (U, D)
            return (users @ vectors.T).cpu().numpy()

    scores, seconds = timed_top10(score, split)
    return {"scores": scores, "train_seconds": train_seconds, "top10_seconds": seconds,
            "best_epoch": result.best_epoch, "val": result.best_metrics, "history": result.history,
            "parameters": sum(p.numel() for p in model.parameters()), "task": task.state(),
            "train_examples": len(data["train"]), "val_examples": len(data["val"])}


# ------------------------------------------------------------------------------------------------- report

def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, found in report["models"].items():
        m = found["metrics"]
        rows.append([name, fmt(m["ndcg@5"]), fmt(m["ndcg@10"]), fmt(m["hit@10"]), fmt(m["mrr"]), fmt(m["auc"]),
                     f"{fmt(m['cold_ndcg@10'], 4)} (chance {fmt(m['cold_chance_ndcg@10'], 4)})",
                     fmt(found["train_seconds"], 1), fmt(found["top10_seconds"], 2)])
    return rows


def verdict(report: dict[str, Any]) -> str:
    """Whether ours meets the issue's target on this run."""
    models = report["models"]
    if "ours" not in models:
        return "ours not run"
    ours = models["ours"]["metrics"]
    best = max(found["metrics"]["ndcg@10"] for name, found in models.items() if name != "ours")
    cold_above = [name for name, found in models.items()
                  if found["metrics"]["cold_ndcg@10"] > found["metrics"]["cold_chance_ndcg@10"]]
    ok = ours["ndcg@10"] >= max(TARGET_NDCG, 1.3 * best) and cold_above == ["ours"]
    return (f"target nDCG@10 ≥ {TARGET_NDCG} and ≥ 1.3 × best baseline ({1.3 * best:.3f}): ours "
            f"{ours['ndcg@10']:.3f}; above chance on cold-start items: {', '.join(cold_above) or 'none'} -> "
            + ("met ✓" if ok else "not met ✗"))


def markdown(report: dict[str, Any]) -> str:
    s = report["split"]
    out = ["# Recommendation benchmark (MovieLens latest-small)", "", f"Command: `{report['command']}`", "",
           f"Device: {report['device']} ({report['torch_threads']} torch threads, torch {report['torch']}, "
           f"{report['platform']}; code {report['code']}); total wall time {report['total_seconds']:.0f} s"
           + (" — **quick smoke run, not a benchmark result**" if report["quick"] else ""), "",
           f"Split: per-user temporal, last {TEST_FRACTION:.0%} of each user's ratings by time = test; "
           f"{s['users']} users ({s['scored_users']} with a test positive), {s['items']} items, "
           f"{s['train_ratings']} train / {s['test_ratings']} test ratings, {s['test_positives']} test positives "
           f"({s['cold_test_positives']} on cold-start items, {s['cold_users']} users).", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    ours = report["models"].get("ours", {})
    out += ["", "Reference nDCG@10 from the issue: " + ", ".join(f"{k} {v}" for k, v in REFERENCE.items()) + ".",
            "", f"Verdict: {report['verdict']}", "",
            f"Ours: overrides `{' '.join(report['overrides'])}`; best epoch {ours.get('best_epoch')}; validation "
            f"(each user's last train positive) {ours.get('val')}; train seconds and top-10 seconds are wall "
            "times on a shared machine.", ""]
    return "\n".join(out)


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(200, Console().width), soft_wrap=True)
    table = Table(title=f"Recommendation benchmark, MovieLens latest-small ({report['device']})"
                  + (" [quick]" if report["quick"] else ""))
    for column in HEADER:
        table.add_column(column, no_wrap=True)
    for row in table_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(report["verdict"])
    console.print(f"total wall time: {report['total_seconds']:.0f} s")


def write_report(report: dict[str, Any], out: Path) -> None:
    """recommend.json + recommend.md in `out`, and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "recommend.json").write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")
    (out / "recommend.md").write_text(markdown(report), encoding="utf-8")
    print_table(report)
    print(f"wrote {out / 'recommend.md'} and {out / 'recommend.json'}")


# ------------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke version: {QUICK_USERS} users, {' '.join(QUICK_OVERRIDES)}, BPR 3 epochs")
    parser.add_argument("--users", type=int, default=None, help="a random subset of this many users (seed 0)")
    parser.add_argument("--no-ours", action="store_true", help="baselines only")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for recommend.md/.json")
    parser.add_argument("--shared-data", default=None, help="datasets root (default: config paths.shared_data)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--verbose", action="store_true", help="training logs (epochs, early stopping)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for our model, e.g. task.user_dim=128")
    return parser


def code_state() -> str:
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        from accuracy import code_state as state  # same wording as the accuracy benchmark

        return state()
    except Exception:  # the report still stands without it
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    import torch

    from nlp_suite.config import load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [*(QUICK_OVERRIDES if args.quick else FULL_OVERRIDES), *args.overrides]
    base = load_config([])
    shared = Path(args.shared_data).resolve() if args.shared_data else Path(str(base.paths.shared_data)).resolve()
    folder = shared / DATASET
    if not folder.is_dir():
        print(f"error: MovieLens not found at {folder} (set --shared-data or NLP_SUITE_SHARED_DATA)", file=sys.stderr)
        return 2
    users_limit = args.users if args.users is not None else (QUICK_USERS if args.quick else None)
    print(f"[split] {folder}" + (f", {users_limit} users" if users_limit else ""), file=sys.stderr, flush=True)
    items, interactions = load_movielens(folder, users_limit, int(base.seed))
    split = temporal_split(items, interactions)
    negatives = sample_auc_negatives(split, seed=0)
    bpr = baselines.BPRConfig(epochs=3 if args.quick else 20)
    print("[baselines] most-popular, item-kNN, BPR-MF", file=sys.stderr, flush=True)
    runs = run_baselines(split, bpr)
    if not args.no_ours:
        print("[ours] training RecommendTask on the train part", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-recommend-") as var:
            runs["ours"] = run_ours(split, overrides, var)
    models = {}
    for name, run in runs.items():
        metrics = evaluate(run.pop("scores"), split, negatives)
        models[name] = {"metrics": metrics, **run}
        print(f"[{name}] nDCG@10 {metrics['ndcg@10']:.4f}", file=sys.stderr, flush=True)
    test_positive = split.test[split.test["value"] >= POSITIVE_RATING]
    cold = set(split.cold_items.tolist())
    report = {
        "command": shlex.join(["python", "bench/recommend.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick, "overrides": overrides, "shared_data": str(shared), "device": "cpu",
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "code": code_state(), "reference_ndcg@10": REFERENCE, "target_ndcg@10": TARGET_NDCG,
        "split": {"users": len(split.users), "scored_users": len(split.relevant), "items": split.shape[1],
                  "train_ratings": len(split.train), "test_ratings": len(split.test),
                  "test_positives": len(test_positive),
                  "cold_test_positives": int(test_positive["item"].isin(cold).sum()),
                  "cold_users": next(iter(models.values()))["metrics"]["cold_users"]},
        "bpr": bpr.__dict__, "models": models,
    }
    report["verdict"] = verdict(report)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    write_report(report, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
