"""Batch recommendations: score every item for every user with the two-tower model, blend in popularity and
freshness, write the top K per user under a new `recommendation_runs` row.

A run is atomic for readers: its row is created as ``running`` (so a long run is visible), all its
recommendations and the switch to ``complete`` are written in one transaction at the end, and any error marks
it ``failed`` with no rows. Readers (`latest_recommendations`) always use the newest complete run, so a failed
or half-done run never replaces the previous complete one.

Final score per (user, item) = w_model * z(model score) + w_cooccurrence * EASE + w_sequence * sequential rules
+ w_pop * popularity + w_fresh * freshness + w_content * content + w_graph * RP3beta (conf `recommend.weights`,
components in `nlp_suite.recommend.blend`; a zero weight skips computing its component), where z() standardises
a user's text two-tower scores over the catalog, EASE and sequential-rule scores are scaled by the user's best,
popularity = log(1 + users with a positive) / max, freshness = `blend.freshness_matrix` of `Item.created_at`
(at the run's time, or with `recommend.blend.freshness_clock: user` at each user's last interaction, the
ranking `bench/recommend.py` validates), content = genre/tag TF-IDF cosine (`Item.tags` '|'-separated,
`Item.description` comma-separated). Items nobody interacted with score w_cold * the cold prior (freshness +
content + text shares, `blend.cold_prior`) when w_cold > 0, and the best of them per user gets rank
`recommend.blend.cold_slot` when its prior reaches `cold_min_prior` (cold start). A user's weights are
`recommend.weights` overridden by their history bucket's (`recommend.blend.history_cuts` / `history_weights`,
`blend.history_groups`: the number of distinct positives picks the bucket). `components` stores model,
popularity and freshness (they sum to the score), model being text + cooccurrence + sequence (+ content, graph,
cold) + the cold-slot lift, each of which is also stored as `model.text`, `model.cooccurrence`, ... (they sum to
model).

Item vectors depend only on the model and the item text, so `ItemVectorCache` can keep them between runs under
`cache_dir/<model fingerprint>/` (conf `recommend.cache_dir`): a nightly run encodes only new or changed items.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.table import Table
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

import nlp_suite
from nlp_suite.data.catalog import MIN_RATING, POSITIVE_EVENTS, item_text, positive_sequences
from nlp_suite.recommend.blend import (BlendSettings, components, content_features, fit_interactions,
                                      freshness_matrix, history_final_scores, history_groups, item_labels)
from nlp_suite.storage.base import utcnow
from nlp_suite.storage.models import Interaction, Item, ModelVersion, Recommendation, RecommendationRun, User
from nlp_suite.storage.session import session_scope
from nlp_suite.tasks.recommend import encode_items, encode_users
from nlp_suite.training.checkpoint import LoadedModel, sha256_file

log = logging.getLogger(__name__)

# Chosen on validation by bench/recommend.py (MovieLens; see its docstring): kept equal to conf recommend.weights.
# content (genre/tag TF-IDF cosine), graph (RP3beta), cold (the cold-item prior): a zero weight skips computing it.
DEFAULT_WEIGHTS: dict[str, float] = {"model": 0.01, "cooccurrence": 1.0, "sequence": 0.3, "popularity": 0.1,
                                     "freshness": 0.02, "content": 0.02, "graph": 0.0, "cold": 0.05}
DEFAULT_HALF_LIFE_DAYS = 730.0
USER_CHUNK = 512  # users scored per matrix product
INSERT_CHUNK = 1000  # recommendation rows per INSERT
CACHE_FORMAT = 1  # bump when the index layout or what a vector means changes: old caches are then ignored
CACHE_INDEX = "index.json"
CACHE_TENSOR = "vectors"  # the one tensor in a cache's safetensors file


@dataclass(frozen=True)
class RecommendSummary:
    """What one batch run wrote."""

    users: int
    items: int
    rows: int
    seconds: float
    run_id: int
    vectors_reused: int = 0  # item vectors served from the cache (persistent or in-memory)
    vectors_computed: int = 0  # item texts encoded by the model in this run

    def as_table(self) -> Table:
        """Two-column rich table for the CLI."""
        table = Table(title=f"Recommendation run {self.run_id}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("users", f"{self.users:,}")
        table.add_row("items", f"{self.items:,}")
        table.add_row("recommendations written", f"{self.rows:,}")
        table.add_row("item vectors reused", f"{self.vectors_reused:,}")
        table.add_row("item vectors computed", f"{self.vectors_computed:,}")
        table.add_row("seconds", f"{self.seconds:.2f}")
        table.add_row("users/second", f"{self.users / self.seconds:,.1f}" if self.seconds > 0 else "-")
        return table


def text_key(text: str) -> str:
    """sha256 of an item text: the cache key of its vector."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def model_fingerprint(loaded: LoadedModel) -> str:
    """sha256 of everything an item vector depends on: weights, tokenizer, max_len, model class, code version.

    Hashed from the loaded model itself rather than trusted from a manifest or version id, so a database whose
    ids were reused, or a model changed in memory, can never be served another model's vectors.
    """
    model = loaded.model
    header = {"cache_format": CACHE_FORMAT, "package": nlp_suite.__version__, "max_len": loaded.max_len,
              "model": f"{type(model).__module__}.{type(model).__qualname__}"}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    digest.update(text_key(loaded.tokenizer.to_json()).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"|{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


class CacheError(ValueError):
    """A persisted item-vector cache is damaged or belongs to another model (it is rebuilt, never trusted)."""


class ItemVectorCache:
    """Item vectors of one loaded model keyed by a hash of the item text, optionally persisted per model.

    Without `directory` it lives in memory for one run (or one caller that passes it to several calls). With
    `directory`, vectors are read at construction from `<directory>/<model fingerprint>/` (a safetensors
    matrix and a JSON index of item id -> text sha256 -> row) and `save()` writes back the items seen since,
    so the next run encodes only new or changed items. A damaged, tampered or foreign cache is detected (file
    sha256, fingerprint, shape, finiteness), logged as a warning and rebuilt; nothing is ever unpickled.
    `reused` / `computed` count vectors served from the cache and texts encoded by the model.
    """

    def __init__(self, loaded: LoadedModel, directory: str | os.PathLike | None = None, *,
                 model_version_id: int | None = None):
        self.loaded = loaded
        self.model_version_id = model_version_id
        self._vectors: dict[str, torch.Tensor] = {}  # text key -> (D,) float32 CPU vector
        self._items: dict[str, str] = {}  # item id -> text key of the items seen since loading (what save writes)
        self._stored: dict[str, str] = {}  # item id -> text key as found on disk
        self.reused = 0
        self.computed = 0
        self.fingerprint = model_fingerprint(loaded) if directory is not None else None
        self.folder = (Path(directory) / self.fingerprint[:32]) if self.fingerprint else None
        if self.folder is not None:
            self._stored = self._load()

    @staticmethod
    def key(text: str) -> str:
        return text_key(text)

    @property
    def dim(self) -> int:
        return int(self.loaded.model.dim)

    def vectors(self, texts: Sequence[str], item_ids: Sequence[Any] | None = None) -> torch.Tensor:
        """(N, D) vectors of `texts`, encoding only those not cached yet; `item_ids` (one per text) mark what
        `save()` persists."""
        if item_ids is not None and len(item_ids) != len(texts):
            raise ValueError(f"{len(item_ids)} item ids for {len(texts)} texts")
        keys = [self.key(text) for text in texts]
        missing = {k: text for k, text in zip(keys, texts) if k not in self._vectors}
        if missing:
            fresh = encode_items(self.loaded.model, self.loaded.tokenizer, list(missing.values()),
                                 self.loaded.max_len).detach().float().cpu()
            self._vectors.update(zip(missing, fresh))
        self.computed += len(missing)
        self.reused += len(keys) - len(missing)  # a text repeated in this call is encoded once, then reused
        if item_ids is not None:
            self._items.update(zip((str(i) for i in item_ids), keys))
        if not keys:
            return torch.zeros(0, self.dim)
        return torch.stack([self._vectors[k] for k in keys])

    def __len__(self) -> int:
        return len(self._vectors)

    # --- persistence --------------------------------------------------------------------------------------------

    def _load(self) -> dict[str, str]:
        """Vectors found on disk into memory; item id -> text key. A bad cache is dropped with a warning."""
        assert self.folder is not None
        index_path = self.folder / CACHE_INDEX
        if not index_path.exists():
            return {}
        try:
            items, matrix = self._read(index_path)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as error:
            log.warning("item-vector cache %s is unusable (%s); rebuilding it", self.folder, error)
            return {}
        stored = {item: key for item, key in items}
        self._vectors.update(zip((key for _, key in items), matrix))
        log.info("item-vector cache %s: %d vectors loaded", self.folder, len(items))
        return stored

    def _read(self, index_path: Path) -> tuple[list[tuple[str, str]], torch.Tensor]:
        """Parse and verify the index and its vectors file (raises CacheError, OSError, ValueError, ...)."""
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
            raise CacheError(f"format {index.get('format') if isinstance(index, dict) else None!r}, "
                             f"expected {CACHE_FORMAT}")
        if index.get("model") != self.fingerprint:
            raise CacheError("written for another model")
        items = [(str(item), str(key)) for item, key in index["items"]]
        name = str(index["file"])
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise CacheError(f"bad vectors file name {name!r}")
        path = self.folder / name
        if sha256_file(path) != index["sha256"]:
            raise CacheError(f"{name}: sha256 mismatch")
        matrix = load_file(str(path)).get(CACHE_TENSOR)
        expected = (len(items), self.dim)
        if matrix is None or tuple(matrix.shape) != expected or matrix.dtype != torch.float32:
            shape = None if matrix is None else (tuple(matrix.shape), str(matrix.dtype))
            raise CacheError(f"{name}: vectors {shape}, expected {expected} float32")
        if not torch.isfinite(matrix).all():
            raise CacheError(f"{name}: non-finite values")
        return items, matrix

    def save(self) -> bool:
        """Persist the vectors of the items seen since loading (atomically); False when there is nothing to write,
        no directory, or the write failed (logged: a cache that cannot be written only costs the next run time)."""
        if self.folder is None or not self._items or self._items == self._stored:
            return False
        try:
            self._write()
        except OSError as error:
            log.warning("could not write the item-vector cache %s: %s", self.folder, error)
            return False
        self._stored = dict(self._items)
        return True

    def _write(self) -> None:
        """Vectors file under a content-addressed name first, then the index (os.replace), then old files."""
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        items = sorted(self._items.items())
        matrix = (torch.stack([self._vectors[key] for _, key in items]) if items
                  else torch.zeros(0, self.dim)).contiguous()
        temporary = self.folder / f".tmp-{uuid.uuid4().hex}"
        save_file({CACHE_TENSOR: matrix}, str(temporary))
        digest = sha256_file(temporary)
        name = f"vectors-{digest[:16]}.safetensors"
        os.replace(temporary, self.folder / name)
        index = {"format": CACHE_FORMAT, "model": self.fingerprint, "model_version_id": self.model_version_id,
                 "file": name, "sha256": digest, "shape": list(matrix.shape), "updated_at": utcnow().isoformat(),
                 "items": [[item, key] for item, key in items]}
        temporary.with_suffix(".json").write_text(json.dumps(index), encoding="utf-8")
        os.replace(temporary.with_suffix(".json"), self.folder / CACHE_INDEX)
        for old in self.folder.glob("vectors-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)
        log.info("item-vector cache %s: %d vectors saved", self.folder, len(items))


@dataclass
class Snapshot:
    """Items, users and their interactions as read from SQL for one run."""

    item_ids: list[int]
    item_external_ids: list[str]
    texts: list[str]
    categories: list[str | None]
    created_at: list[datetime]
    user_ids: list[int]
    user_external_ids: list[str]
    histories: list[list[int]]  # per user: item indexes of the last `history` positives, oldest first
    seen: list[np.ndarray]  # per user: item indexes of every interaction (any event)
    positive_users: np.ndarray  # per item: distinct users with a positive interaction
    index: dict[int, int] = field(default_factory=dict)  # item id -> index
    positives: list[list[int]] = field(default_factory=list)  # per user: every positive, oldest first
    sequences: list[list[int]] = field(default_factory=list)  # per user: every interaction (any event), oldest first
    tags: list[str | None] = field(default_factory=list)  # per item: '|'-separated tags / genres
    descriptions: list[str | None] = field(default_factory=list)  # per item
    last_seen: list[datetime | None] = field(default_factory=list)  # per user: latest interaction time


def _task_setting(loaded: LoadedModel, name: str, default: Any) -> Any:
    return getattr(loaded.task, name, default)


def read_snapshot(session: Session, history: int, positive_events: Sequence[str] = POSITIVE_EVENTS,
                  min_rating: float = MIN_RATING) -> Snapshot:
    """Everything a run needs, read in one session (ids ordered, so runs are deterministic)."""
    items = session.execute(select(Item.id, Item.external_id, Item.title, Item.description, Item.tags,
                                   Item.category, Item.created_at).order_by(Item.id)).all()
    users = session.execute(select(User.id, User.external_id).order_by(User.id)).all()
    frame = pd.DataFrame(session.execute(
        select(Interaction.user_id, Interaction.item_id, Interaction.event, Interaction.value,
               Interaction.occurred_at).order_by(Interaction.user_id, Interaction.occurred_at, Interaction.id)
    ).all(), columns=["user_id", "item_id", "event", "value", "occurred_at"])
    index = {row.id: i for i, row in enumerate(items)}
    latest = frame.groupby("user_id")["occurred_at"].max().to_dict() if len(frame) else {}
    sequences = positive_sequences(frame, positive_events, min_rating)
    seen_by_user = ({user: np.array(sorted({index[i] for i in group}), dtype=np.int64)
                     for user, group in frame.groupby("user_id")["item_id"]} if len(frame) else {})
    ordered = ({user: group.tolist() for user, group in frame.groupby("user_id", sort=False)["item_id"]}
               if len(frame) else {})  # the query orders by user, time, id
    positive_users = np.zeros(len(items), dtype=np.float64)
    for sequence in sequences.values():
        for item in sequence:
            positive_users[index[item]] += 1
    empty = np.zeros(0, dtype=np.int64)
    return Snapshot(
        item_ids=[row.id for row in items], item_external_ids=[row.external_id for row in items],
        texts=[item_text(row.title, row.tags, row.description) for row in items],
        categories=[row.category for row in items], created_at=[row.created_at for row in items],
        user_ids=[row.id for row in users], user_external_ids=[row.external_id for row in users],
        histories=[[index[i] for i in sequences.get(row.id, [])[-history:]] for row in users],
        seen=[seen_by_user.get(row.id, empty) for row in users],
        positive_users=positive_users, index=index,
        positives=[[index[i] for i in sequences.get(row.id, [])] for row in users],
        sequences=[[index[i] for i in ordered.get(row.id, [])] for row in users],
        tags=[row.tags for row in items], descriptions=[row.description for row in items],
        last_seen=[_python_datetime(latest.get(row.id)) for row in users])


def _python_datetime(value: Any) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def epoch(moment: datetime | None) -> float:
    """Epoch seconds of a datetime (naive = UTC, as stored), NaN for None."""
    if moment is None:
        return math.nan
    stamp = pd.Timestamp(moment)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).timestamp()


def user_freshness(snapshot: Snapshot, now: datetime, half_life_days: float, settings: BlendSettings,
                   users: slice = slice(None)) -> np.ndarray:
    """Freshness of every item (`blend.freshness_matrix`, created = `Item.created_at`): (I,) at the run's time,
    or with `freshness_clock: user` (U, I) for the `users` rows at each user's last interaction (users without
    one: the run's time)."""
    created = np.array([epoch(c) for c in snapshot.created_at], dtype=np.float64)
    run_now = epoch(now)
    if settings.freshness_clock != "user":
        return freshness_matrix(created, np.array([run_now]), half_life_days, settings.freshness_peak_days,
                                settings.freshness_future_half_life_days)[0]
    clock = np.array([epoch(t) for t in snapshot.last_seen[users]], dtype=np.float64)
    clock = np.where(np.isnan(clock), run_now, clock)
    return freshness_matrix(created, clock, half_life_days, settings.freshness_peak_days,
                            settings.freshness_future_half_life_days)


def popularity(positive_users: np.ndarray) -> np.ndarray:
    """log(1 + count) scaled to [0, 1] by the most popular item (all zeros when nothing was liked)."""
    logged = np.log1p(np.asarray(positive_users, dtype=np.float64))
    top = logged.max() if logged.size else 0.0
    return logged / top if top > 0 else np.zeros_like(logged)


def freshness(created_at: Sequence[datetime], now: datetime, half_life_days: float = DEFAULT_HALF_LIFE_DAYS
              ) -> np.ndarray:
    """0.5 ** (age in days / half-life): 1 for a brand-new item, 0.5 at one half-life (future dates count as new)."""
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    ages = np.array([max((now - created).total_seconds(), 0.0) / 86400 for created in created_at], dtype=np.float64)
    return np.power(0.5, ages / half_life_days)


def resolve_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """DEFAULT_WEIGHTS overridden by `weights` (e.g. conf `recommend.weights`); unknown keys are an error."""
    given = dict(weights or {})
    unknown = sorted(set(given) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ValueError(f"unknown recommendation weights {unknown}; expected keys {sorted(DEFAULT_WEIGHTS)}")
    merged = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in given.items()}}
    if not all(math.isfinite(v) for v in merged.values()):
        raise ValueError(f"recommendation weights must be finite numbers, got {merged}")
    return merged


def standardise(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores (rows with no spread become 0)."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 1e-12, std, 1.0)


def pick_top(final: np.ndarray, exclude: np.ndarray, categories: Sequence[str | None], top_k: int,
             category_cap: int | None = None) -> list[int]:
    """Indexes of the `top_k` best items of one user, skipping `exclude`, at most `category_cap` per category.

    Ties keep catalog order (stable sort), so the same inputs always give the same list.
    """
    scores = final.copy()
    scores[exclude] = -np.inf
    available = int(np.isfinite(scores).sum())
    if category_cap is None:
        count = min(top_k, available)
        if count == 0:
            return []
        order = np.argsort(-scores, kind="stable")
        return order[:count].tolist()
    chosen: list[int] = []
    per_category: dict[str | None, int] = {}
    for index in np.argsort(-scores, kind="stable")[:available]:
        category = categories[index]
        if category is not None and per_category.get(category, 0) >= category_cap:
            continue
        per_category[category] = per_category.get(category, 0) + 1
        chosen.append(int(index))
        if len(chosen) == top_k:
            break
    return chosen


def user_vectors(loaded: LoadedModel, item_vectors: torch.Tensor, histories: Sequence[Sequence[int]]) -> torch.Tensor:
    """(U, D) user vectors on CPU from item-index histories (empty history: the cold-user vector)."""
    return encode_users(loaded.model, [item_vectors[list(h)] for h in histories]).cpu()


def component_terms(parts: Mapping[str, np.ndarray], weights: Mapping[str, float], row: int, index: int,
                    score: float, cold: bool = False) -> dict[str, float]:
    """The weighted terms of one score: model, popularity, freshness (they sum to it; what the UI shows), where
    model = text + cooccurrence + sequence (+ content, graph, cold when weighted) + the cold-slot lift, each also
    stored as `model.<part>`. A `cold` item scored by the cold prior (weight "cold" > 0) has only that term."""
    replaced = cold and bool(weights.get("cold")) and "cold" in parts

    def term(name: str) -> float:
        if replaced and name != "cold":
            return 0.0
        part = parts[name]
        return float(weights[name] * (part[row, index] if np.ndim(part) == 2 else part[index]))

    extra = [name for name in ("content", "graph", "cold") if weights.get(name) and name in parts]
    detail = {f"model.{name}": term(name) for name in ("model", "cooccurrence", "sequence", *extra)}
    detail["model.text"] = detail.pop("model.model")
    popular, fresh = term("popularity"), term("freshness")
    detail["model.cold_slot"] = score - sum(detail.values()) - popular - fresh  # 0 unless promoted
    return {"model": score - popular - fresh, "popularity": popular, "freshness": fresh, **detail}


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """INSERT the run's recommendation rows in chunks (same transaction as the status switch)."""
    for start in range(0, len(rows), INSERT_CHUNK):
        session.execute(insert(Recommendation), rows[start:start + INSERT_CHUNK])


def _finish(url: str, run_id: int, status: str) -> None:
    with session_scope(url) as session:
        session.execute(update(RecommendationRun).where(RecommendationRun.id == run_id)
                        .values(status=status, finished_at=utcnow()))


def recommend_all(url: str, loaded_model: LoadedModel, model_version_id: int | None, *, top_k: int = 10,
                  history: int = 10, weights: Mapping[str, float] | None = None, category_cap: int | None = None,
                  half_life_days: float = DEFAULT_HALF_LIFE_DAYS, now: datetime | None = None,
                  cache: ItemVectorCache | None = None, cache_dir: str | os.PathLike | None = None,
                  blend: Mapping[str, float] | None = None) -> RecommendSummary:
    """Top `top_k` unseen items for every user, written as one new complete run (see module doc).

    `weights`: {model, cooccurrence, sequence, popularity, freshness, content, graph, cold} (missing keys take
    DEFAULT_WEIGHTS; pass conf `recommend.weights`). `history`: recent positives fed to the user tower.
    `category_cap`: at most this many items of one category per user. `now`: the reference time for freshness
    (default: current UTC time; with `freshness_clock: user`, for users without any interaction).
    `cache_dir`: keep item vectors there between runs (conf `recommend.cache_dir`); `cache`: a ready cache instead.
    `blend`: EASE / sequential-rule / freshness / cold-prior / cold-slot settings (conf `recommend.blend`;
    missing keys: `BlendSettings`).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if category_cap is not None and category_cap < 1:
        raise ValueError(f"category_cap must be >= 1 or None, got {category_cap}")
    weights = resolve_weights(weights)
    settings = BlendSettings.from_mapping(blend)
    started = time.perf_counter()
    now = now or utcnow()
    with session_scope(url) as session:
        if model_version_id is not None and session.get(ModelVersion, model_version_id) is None:
            raise ValueError(f"model version {model_version_id} does not exist")
        run = RecommendationRun(model_version_id=model_version_id, status="running", started_at=utcnow())
        session.add(run)
        session.flush()
        run_id = run.id
    try:
        with session_scope(url) as session:
            snapshot = read_snapshot(session, history, _task_setting(loaded_model, "positive_events", POSITIVE_EVENTS),
                                     _task_setting(loaded_model, "min_rating", MIN_RATING))
        if cache is None:
            cache = ItemVectorCache(loaded_model, cache_dir, model_version_id=model_version_id)
        reused, computed = cache.reused, cache.computed
        vectors = cache.vectors(snapshot.texts, snapshot.item_external_ids)  # (N, D) on CPU
        cache.save()  # before writing rows: the vectors stay valid even if this run fails later
        reused, computed = cache.reused - reused, cache.computed - computed
        pop = popularity(snapshot.positive_users)
        fresh = user_freshness(snapshot, now, half_life_days, settings) if settings.freshness_clock == "run" else None
        used = {name: bool(weight) or any(dict(o).get(name) for o in settings.history_weights)
                for name, weight in weights.items()}  # a component some user's weights need
        interactions = fit_interactions(snapshot.positives, snapshot.sequences, len(snapshot.item_ids), settings,
                                        graph=used["graph"])
        content = (content_features(item_labels(snapshot.tags, snapshot.descriptions))
                   if used["content"] or (used["cold"] and settings.cold_content) else None)
        slot = min(settings.cold_slot, top_k)  # a slot past top_k would never be shown
        cold = np.ones(len(snapshot.item_ids), dtype=bool)  # no interaction from anyone: text alone (cold start)
        for sequence in snapshot.sequences:
            cold[sequence] = False
        rows: list[dict[str, Any]] = []
        for start in range(0, len(snapshot.user_ids), USER_CHUNK):
            stop = min(start + USER_CHUNK, len(snapshot.user_ids))
            users = user_vectors(loaded_model, vectors, snapshot.histories[start:stop])
            text = (users @ vectors.T).double().numpy() if len(vectors) else np.zeros((stop - start, 0))
            parts = components(interactions, text, snapshot.positives[start:stop], snapshot.sequences[start:stop],
                               pop, fresh if fresh is not None else
                               user_freshness(snapshot, now, half_life_days, settings, slice(start, stop)),
                               content, cold if used["cold"] else None)
            n_positives = np.array([len(set(p)) for p in snapshot.positives[start:stop]], dtype=np.float64)
            final = history_final_scores(parts, weights, settings, n_positives, cold, snapshot.seen[start:stop],
                                         slot)
            row_weights: list[dict[str, float]] = [weights] * (stop - start)
            for group, group_weights in history_groups(n_positives, weights, settings):
                for row in group:
                    row_weights[row] = group_weights
            for row in range(stop - start):
                user = start + row
                for rank, index in enumerate(pick_top(final[row], snapshot.seen[user], snapshot.categories, top_k,
                                                      category_cap), start=1):
                    terms = component_terms(parts, row_weights[row], row, index, float(final[row, index]),
                                            bool(cold[index]))
                    rows.append({"run_id": run_id, "user_id": snapshot.user_ids[user],
                                 "item_id": snapshot.item_ids[index], "rank": rank,
                                 "score": float(final[row, index]), "components": terms})
        with session_scope(url) as session:  # rows and the switch to complete: one transaction
            _insert_rows(session, rows)
            session.execute(update(RecommendationRun).where(RecommendationRun.id == run_id)
                            .values(status="complete", finished_at=utcnow()))
    except BaseException:
        log.exception("recommendation run %d failed; readers keep the previous complete run", run_id)
        _finish(url, run_id, "failed")
        raise
    summary = RecommendSummary(users=len(snapshot.user_ids), items=len(snapshot.item_ids), rows=len(rows),
                               seconds=time.perf_counter() - started, run_id=run_id, vectors_reused=reused,
                               vectors_computed=computed)
    log.info("recommendation run %d: %d rows for %d users over %d items in %.2fs (item vectors: %d reused, "
             "%d computed)", run_id, summary.rows, summary.users, summary.items, summary.seconds, reused, computed)
    return summary


def latest_run_id(session: Session) -> int | None:
    """The newest complete run (by finish time, then id), or None."""
    return session.scalar(select(RecommendationRun.id).where(RecommendationRun.status == "complete")
                          .order_by(RecommendationRun.finished_at.desc(), RecommendationRun.id.desc()).limit(1))


def latest_recommendations(url: str, user_external_id: str) -> list[dict[str, Any]]:
    """The user's recommendations of the newest complete run, best first ([] for unknown users or no run).

    Each dict: rank, item_id (external), title, category, score, components, run_id, model_version_id.
    """
    with session_scope(url) as session:
        run_id = latest_run_id(session)
        if run_id is None:
            return []
        run = session.get(RecommendationRun, run_id)
        rows = session.execute(
            select(Recommendation.rank, Recommendation.score, Recommendation.components, Item.external_id,
                   Item.title, Item.category)
            .join(Item, Item.id == Recommendation.item_id).join(User, User.id == Recommendation.user_id)
            .where(Recommendation.run_id == run_id, User.external_id == user_external_id)
            .order_by(Recommendation.rank)).all()
        return [{"rank": row.rank, "item_id": row.external_id, "title": row.title, "category": row.category,
                 "score": row.score, "components": dict(row.components or {}), "run_id": run_id,
                 "model_version_id": run.model_version_id} for row in rows]


def users_for_new_item(url: str, loaded_model: LoadedModel, text: str, top_n: int = 10, *, history: int = 10,
                       cache: ItemVectorCache | None = None) -> list[dict[str, Any]]:
    """Cold start: the users a new item (known only by its text) would reach, best first.

    For each user the new item's model score is placed within that user's scores over the current catalog:
    `z` (standardised score, used for ordering) and `would_rank` (1 + unseen catalog items scoring higher).
    Each dict: user_id (external), score, z, would_rank, history (positives the user vector was built from).
    """
    if not text or not text.strip():
        raise ValueError("the new item needs a non-empty text")
    with session_scope(url) as session:
        snapshot = read_snapshot(session, history, _task_setting(loaded_model, "positive_events", POSITIVE_EVENTS),
                                 _task_setting(loaded_model, "min_rating", MIN_RATING))
    if not snapshot.user_ids:
        return []
    if cache is None:  # not `cache or ...`: an empty cache is falsy (__len__) and must still be filled
        cache = ItemVectorCache(loaded_model)
    catalog = cache.vectors(snapshot.texts, snapshot.item_external_ids)
    new = encode_items(loaded_model.model, loaded_model.tokenizer, [text], loaded_model.max_len).cpu()[0]
    users = user_vectors(loaded_model, catalog, snapshot.histories)
    new_scores = (users @ new).double().numpy()
    if len(catalog):
        catalog_scores = (users @ catalog.T).double().numpy()
        mean, std = catalog_scores.mean(axis=1), catalog_scores.std(axis=1)
        z = (new_scores - mean) / np.where(std > 1e-12, std, 1.0)
        higher = catalog_scores > new_scores[:, None]
        for user, seen in enumerate(snapshot.seen):
            higher[user, seen] = False
        would_rank = higher.sum(axis=1) + 1
    else:
        z, would_rank = np.zeros_like(new_scores), np.ones(len(new_scores), dtype=np.int64)
    order = np.argsort(-z, kind="stable")[:top_n]
    return [{"user_id": snapshot.user_external_ids[u], "score": float(new_scores[u]), "z": float(z[u]),
             "would_rank": int(would_rank[u]), "history": len(snapshot.histories[u])} for u in order]


def prune_runs(url: str, keep: int = 3) -> int:
    """Delete all but the newest `keep` complete runs (and every failed run older than them); returns runs deleted.

    Running runs are left alone. Recommendations go with their run (ON DELETE CASCADE, and deleted explicitly
    for backends that do not enforce it).
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    with session_scope(url) as session:
        kept = list(session.scalars(select(RecommendationRun.id).where(RecommendationRun.status == "complete")
                                    .order_by(RecommendationRun.finished_at.desc(), RecommendationRun.id.desc())
                                    .limit(keep)))
        if not kept:
            return 0
        oldest_kept = min(kept)
        doomed = list(session.scalars(select(RecommendationRun.id).where(
            RecommendationRun.id < oldest_kept, RecommendationRun.status.in_(("complete", "failed")))))
        if doomed:
            session.execute(Recommendation.__table__.delete().where(Recommendation.run_id.in_(doomed)))
            session.execute(RecommendationRun.__table__.delete().where(RecommendationRun.id.in_(doomed)))
        return len(doomed)
