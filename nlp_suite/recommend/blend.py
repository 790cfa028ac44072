"""Interaction-based ranking components blended with the text two-tower score (`batch.recommend_all`, the bench).

Every component is a dense (U, I) matrix, higher = better, scaled per user by `scale_rows` (divided by the
row's largest absolute value) so weights in conf `recommend.weights` mean the same for every user:

* `cooccurrence`: EASE (Steck 2019), a closed-form item-item model on the binary positive matrix X:
  B = I - P / diag(P) with P = (X'X + lambda I)^-1, zero diagonal; score = X B. Only items with a positive take
  part (the inverse is cubic in them); items nobody liked score 0.
* `sequence`: sequential rules: T[i, j] sums 1 / gap over every user's time-ordered interactions where j follows
  i within `sequence_gap` steps; a user scores sum_k decay^k T[k-th most recent item, :] over the last
  `sequence_recent` items (what people watch next, order-aware).
* `graph`: RP3beta (Paudel et al. 2017): a 3-step random walk item -> user -> item on X, W[i, j] = sum_u
  P(u | i) P(j | u), divided by popularity(j) ** `rp3_beta` (so the walk does not always end at blockbusters),
  each row keeping its `rp3_neighbours` largest weights; score = profile W.
* `content`: cosine between the user's TF-IDF label profile (genres, tags; `item_labels`) and each item's:
  the one interaction component that also scores cold items.
* `freshness`: `freshness_matrix`, item age at the run's time or (`freshness_clock: user`) at each user's last
  interaction, peaking at `freshness_peak_days` and fading for items younger than that.
* `cold`: the cold-item prior (`cold_prior`) = freshness + `cold_content` * content + `cold_text` * text z, on
  never-interacted items only; with weight "cold" > 0 it is a cold item's whole score (`final_scores`).

The user profile EASE and RP3beta read is the binary positive matrix, or with `recency_half_life` > 0 each
positive weighted 0.5 ** (k / half-life) for the k-th most recent (tastes drift; the test part is the future).

Weights can depend on how much a user has told us (`history_groups`, conf `recommend.blend.history_cuts` /
`history_weights`): users are split by their number of distinct positives and each bucket overrides some of
`recommend.weights` (on MovieLens validation short histories lean on the sequential rules and freshness, long
ones on EASE); `history_final_scores` ranks every bucket with its own weights.

Items with no interaction get 0 from both, so on their own they could never reach a top K: `promote_cold` is the
business rule that gives the best never-interacted item of each user (ranked by the blend: the cold prior, or
text, content and freshness) the `cold_slot`-th place when its prior reaches `cold_min_prior` (cold start).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class BlendSettings:
    """Hyperparameters of the interaction components (conf `recommend.blend`; chosen on validation, see bench)."""

    ease_lambda: float = 100.0  # L2 of EASE: larger = smoother, more popular items
    sequence_gap: int = 10  # a pair (i, j) counts when j comes at most this many interactions after i
    sequence_recent: int = 5  # the user's most recent interactions that vote
    sequence_decay: float = 0.8  # weight of the k-th most recent of them: decay ** k
    cold_slot: int = 10  # rank given to the best never-interacted item (0 = no slot)
    cold_freshness: float = 0.0  # extra freshness weight when choosing that item (new items are what is watched)
    rp3_beta: float = 0.5  # RP3beta popularity penalty (0 = plain P^3 walk)
    rp3_neighbours: int = 200  # weights kept per item row (0 = all)
    recency_half_life: float = 0.0  # profile weight halves every this many positives back (0 = all weigh 1)
    freshness_clock: str = "user"  # "run": age at the run's time; "user": at each user's last interaction
    freshness_peak_days: float = 365.0  # age of the freshest items (a title year is 1 January: about 1 year)
    freshness_future_half_life_days: float = 182.0  # items created after "now": halves every N days (0 = new, 1)
    cold_content: float = 0.0  # weight of the content cosine inside the cold-item prior (component "cold")
    cold_text: float = 0.0  # weight of the text z-score inside the cold-item prior
    cold_min_prior: float = 0.9  # promote a cold item only when its prior reaches this (0 = always)
    # per-user weights by history length: a user with n positives is in bucket sum(n >= cut for cut in
    # history_cuts) and ranks with conf `recommend.weights` overridden by history_weights[bucket] (`history_groups`)
    history_cuts: tuple[float, ...] = (17.0, 45.0)
    history_weights: tuple[tuple[tuple[str, float], ...], ...] = (  # one (name, weight) tuple per bucket
        (("freshness", 0.2), ("popularity", 0.03), ("sequence", 0.8)),
        (("freshness", 0.0), ("popularity", 0.02), ("sequence", 0.5)),
        (("freshness", 0.07), ("popularity", 0.05), ("sequence", 0.2)))

    @classmethod
    def from_mapping(cls, given: Mapping[str, float] | None) -> "BlendSettings":
        """Settings from a conf mapping; unknown keys are an error (a typo must not silently do nothing)."""
        given = dict(given or {})
        names = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"unknown blend settings {unknown}; expected keys {sorted(names)}")
        convert = {"int": int, "str": str}
        history = {}  # lists in conf; absent keys keep the defaults, null or [] = one group (no buckets)
        if "history_cuts" in given:
            history["history_cuts"] = tuple(float(c) for c in given.pop("history_cuts") or ())
        if "history_weights" in given:
            history["history_weights"] = tuple(tuple(sorted((str(k), float(v)) for k, v in dict(w or {}).items()))
                                               for w in given.pop("history_weights") or ())
        settings = cls(**{k: convert.get(names[k], float)(v) for k, v in given.items()}, **history)
        cuts, by_bucket = settings.history_cuts, settings.history_weights
        if list(cuts) != sorted(set(cuts)) or (cuts or by_bucket) and len(by_bucket) != len(cuts) + 1:
            raise ValueError(f"history_cuts must be increasing and history_weights hold one mapping per bucket "
                             f"(len(history_cuts) + 1): {settings}")
        if settings.ease_lambda <= 0 or settings.sequence_gap < 1 or settings.sequence_recent < 1:
            raise ValueError(f"ease_lambda must be > 0, sequence_gap and sequence_recent >= 1: {settings}")
        if (not 0 < settings.sequence_decay <= 1 or settings.cold_slot < 0 or not math.isfinite(settings.ease_lambda)
                or not math.isfinite(settings.cold_freshness)):
            raise ValueError(f"sequence_decay must be in (0, 1], cold_slot >= 0: {settings}")
        if settings.rp3_beta < 0 or settings.rp3_neighbours < 0 or not settings.recency_half_life >= 0:
            raise ValueError(f"rp3_beta, rp3_neighbours and recency_half_life must be >= 0: {settings}")
        if settings.freshness_clock not in ("run", "user"):
            raise ValueError(f"freshness_clock must be 'run' or 'user', got {settings.freshness_clock!r}")
        if not (settings.freshness_peak_days >= 0 and settings.freshness_future_half_life_days >= 0
                and settings.cold_content >= 0 and settings.cold_min_prior >= 0 and settings.cold_text >= 0):
            raise ValueError(f"freshness_peak_days, freshness_future_half_life_days, cold_content and "
                             f"cold_min_prior must be >= 0: {settings}")
        return settings


def history_groups(n_positives: np.ndarray, weights: Mapping[str, float], settings: BlendSettings
                   ) -> list[tuple[np.ndarray, dict[str, float]]]:
    """[(user rows, their weights)]: users split by their number of positives at `settings.history_cuts` (bucket
    b = how many cuts n reaches), bucket b ranking with `weights` overridden by `settings.history_weights[b]`
    (unknown names are an error); no cuts = one group of every user with `weights`. Empty groups are left out."""
    n_positives = np.asarray(n_positives, dtype=np.float64)
    if not settings.history_cuts:
        return [(np.arange(len(n_positives)), dict(weights))]
    bucket = np.searchsorted(np.asarray(settings.history_cuts), n_positives, side="right")
    out = []
    for b, overrides in enumerate(settings.history_weights):
        unknown = sorted(set(dict(overrides)) - set(weights))
        if unknown:
            raise ValueError(f"history_weights[{b}] names unknown weights {unknown}; expected {sorted(weights)}")
        rows = np.flatnonzero(bucket == b)
        if len(rows):
            out.append((rows, {**weights, **dict(overrides)}))
    return out


def history_final_scores(parts: Mapping[str, np.ndarray], weights: Mapping[str, float], settings: BlendSettings,
                         n_positives: np.ndarray, cold: np.ndarray, exclude: Sequence[np.ndarray],
                         cold_slot: int | None = None) -> np.ndarray:
    """`final_scores` with each user's weights from `history_groups` (conf `recommend.blend.history_*`) and the
    cold-slot settings of `settings` (`cold_slot` overrides its slot, e.g. capped at top K)."""
    slot = settings.cold_slot if cold_slot is None else cold_slot
    shape = np.shape(parts["model"])
    out = np.zeros(shape, dtype=np.float64)
    for rows, group_weights in history_groups(n_positives, weights, settings):
        sub = {k: (np.broadcast_to(v, shape)[rows] if np.ndim(v) == 2 else v) for k, v in parts.items()}
        out[rows] = final_scores(sub, group_weights, cold, [exclude[r] for r in rows], slot,
                                 settings.cold_freshness, settings.cold_min_prior)
    return out


def positive_matrix(sequences: Sequence[Sequence[int]], n_items: int) -> sparse.csr_matrix:
    """(U, I) binary CSR matrix: 1 where user u has item i in their sequence."""
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = np.fromiter((i for s in sequences for i in s), dtype=np.int64, count=len(rows))
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(sequences), n_items))
    matrix.data[:] = 1.0  # repeated pairs count once
    return matrix


def profile_matrix(sequences: Sequence[Sequence[int]], n_items: int, half_life: float = 0.0) -> sparse.csr_matrix:
    """(U, I) user profiles: 1 per item of the time-ordered sequence, or 0.5 ** (k / half_life) for the k-th most
    recent (a repeated item keeps its latest weight); half_life 0 = `positive_matrix`."""
    if half_life <= 0:
        return positive_matrix(sequences, n_items)
    rows, cols, values = [], [], []
    for user, sequence in enumerate(sequences):
        items, first = np.unique(np.asarray(sequence, dtype=np.int64)[::-1], return_index=True)  # k of latest
        rows.append(np.full(len(items), user))
        cols.append(items)
        values.append(np.power(0.5, first / half_life))
    if not rows:
        return sparse.csr_matrix((len(sequences), n_items), dtype=np.float64)
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(len(sequences), n_items))


def rp3beta_weights(positive: sparse.spmatrix, beta: float, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """(warm item indexes, their (W, W) RP3beta weights): P(j | i) over item -> user -> item, / popularity(j) **
    beta, zero diagonal, each row's `neighbours` largest kept (0 = all). Only items with a positive take part."""
    x = sparse.csr_matrix(positive, dtype=np.float64)
    x.data[:] = 1.0
    degree = np.asarray(x.sum(axis=0)).ravel()
    warm = np.flatnonzero(degree > 0)
    xw = x[:, warm]
    user_degree = np.asarray(xw.sum(axis=1)).ravel()
    to_user = sparse.diags(1.0 / degree[warm]) @ xw.T  # (W, U) P(u | i)
    to_item = sparse.diags(1.0 / np.maximum(user_degree, 1.0)) @ xw  # (U, W) P(j | u)
    weights = (to_user @ to_item).toarray() / np.power(degree[warm], beta)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    if 0 < neighbours < len(warm):  # small weights are mostly noise from one shared user
        cut = np.partition(weights, -neighbours, axis=1)[:, -neighbours][:, None]
        weights[weights < cut] = 0.0
    return warm, weights


def content_features(labels: Sequence[Sequence[str]]) -> sparse.csr_matrix:
    """(I, F) TF-IDF rows (L2-normalised) of each item's labels (e.g. genres and tags): defined for cold items
    too, so a user whose history shares labels with a never-rated item can see it."""
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for item, item_labels in enumerate(labels):
        for label in set(item_labels):
            rows.append(item)
            cols.append(vocabulary.setdefault(label, len(vocabulary)))
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(labels), len(vocabulary)))
    idf = np.log((1 + len(labels)) / (1 + np.asarray(x.sum(axis=0)).ravel())) + 1.0  # rare labels say more
    x = sparse.csr_matrix(x @ sparse.diags(idf))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    return sparse.csr_matrix(sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ x)


def content_scores(profile: sparse.spmatrix, features: sparse.spmatrix) -> np.ndarray:
    """(U, I) cosine between each user's profile-weighted mean label vector and every item's."""
    taste = sparse.csr_matrix(profile @ features)
    norms = np.sqrt(np.asarray(taste.multiply(taste).sum(axis=1)).ravel())
    taste = sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ taste
    return np.asarray((taste @ features.T).todense(), dtype=np.float64)


def ease_weights(positive: sparse.spmatrix, ease_lambda: float) -> tuple[np.ndarray, np.ndarray]:
    """(warm item indexes, their (W, W) EASE weights B); only items with a positive take part."""
    x = sparse.csr_matrix(positive, dtype=np.float64)
    warm = np.flatnonzero(np.asarray(x.sum(axis=0)).ravel() > 0)
    xw = x[:, warm]
    gram = (xw.T @ xw).toarray()
    gram[np.diag_indices_from(gram)] += ease_lambda
    inverse = np.linalg.inv(gram) if len(warm) else gram
    weights = inverse / -np.diag(inverse)[None, :] if len(warm) else inverse
    weights[np.diag_indices_from(weights)] = 0.0
    return warm, weights


def ease_scores(positive: sparse.spmatrix, warm: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(U, I) EASE scores X B of the users in `positive`; items outside `warm` score 0."""
    x = sparse.csr_matrix(positive, dtype=np.float64)
    out = np.zeros(x.shape, dtype=np.float64)
    if len(warm):
        out[:, warm] = x[:, warm] @ weights
    return out


def transition_matrix(sequences: Sequence[Sequence[int]], n_items: int, max_gap: int) -> sparse.csr_matrix:
    """(I, I) sequential rules: T[i, j] = sum of 1 / gap over pairs where j follows i within `max_gap` steps."""
    rows, cols, values = [], [], []
    for sequence in sequences:
        s = np.asarray(sequence, dtype=np.int64)
        for gap in range(1, min(max_gap, len(s) - 1) + 1):
            rows.append(s[:-gap])
            cols.append(s[gap:])
            values.append(np.full(len(s) - gap, 1.0 / gap))
    if not rows:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float64)
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n_items, n_items))


def sequence_scores(sequences: Sequence[Sequence[int]], transitions: sparse.spmatrix, recent: int,
                    decay: float) -> np.ndarray:
    """(U, I) sum over each user's `recent` last items (most recent weighted 1, then decay, decay^2, ...)."""
    rows, cols, values = [], [], []
    for user, sequence in enumerate(sequences):
        last = np.asarray(sequence, dtype=np.int64)[::-1][:recent]
        rows.append(np.full(len(last), user))
        cols.append(last)
        values.append(decay ** np.arange(len(last), dtype=np.float64))
    n_items = transitions.shape[0]
    if not rows:
        return np.zeros((len(sequences), n_items))
    votes = sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(len(sequences), n_items))
    return np.asarray((votes @ transitions).todense(), dtype=np.float64)


def scale_rows(scores: np.ndarray) -> np.ndarray:
    """Each row divided by its largest absolute value (all-zero rows stay 0), so every user's best is +-1."""
    scores = np.asarray(scores, dtype=np.float64)
    top = np.abs(scores).max(axis=1, keepdims=True) if scores.size else np.zeros((len(scores), 1))
    return scores / np.where(top > 0, top, 1.0)


def blend(components: Mapping[str, np.ndarray | float], weights: Mapping[str, float]) -> np.ndarray:
    """sum_k weights[k] * components[k] over the weights' keys (a missing component is an error)."""
    missing = sorted(k for k, w in weights.items() if w and k not in components)
    if missing:
        raise ValueError(f"weights {missing} have no component")
    shapes = [np.shape(components[k]) for k, w in weights.items() if w and np.ndim(components[k]) == 2]
    total = np.zeros(shapes[0] if shapes else (), dtype=np.float64)
    for key, weight in weights.items():
        if weight:
            total = total + weight * np.asarray(components[key], dtype=np.float64)
    return total


def promote_cold(final: np.ndarray, cold: np.ndarray, exclude: Sequence[np.ndarray], slot: int,
                 cold_rank: np.ndarray | None = None) -> np.ndarray:
    """Copy of `final` where each user's best cold item (by `cold_rank`, default `final`) sits at rank `slot`
    (1-based) or better.

    The item gets a score between the (slot-1)-th and slot-th best of the other allowed items, so the first
    slot-1 places keep their order; an item already ranked within `slot` keeps its score. `cold`: (I,) bool.
    """
    out = np.array(final, dtype=np.float64, copy=True)
    cold_items = np.flatnonzero(cold)
    if slot < 1 or len(cold_items) == 0:
        return out
    for user in range(len(out)):
        allowed = np.ones(out.shape[1], dtype=bool)
        allowed[np.asarray(exclude[user], dtype=np.int64)] = False
        candidates = cold_items[allowed[cold_items]]
        if len(candidates) == 0:
            continue
        rank = out[user] if cold_rank is None else cold_rank[user]
        best = int(candidates[np.argmax(rank[candidates])])
        allowed[best] = False
        others = np.sort(out[user, allowed])[::-1]
        if len(others) < slot or out[user, best] > others[slot - 1]:
            continue  # already within the first `slot` places
        below = others[slot - 1]
        above = others[slot - 2] if slot >= 2 else below + 2.0
        out[user, best] = (above + below) / 2 if above > below else np.nextafter(below, np.inf)
    return out


def freshness_matrix(created: np.ndarray, now: np.ndarray, half_life_days: float, peak_days: float = 0.0,
                     future_half_life_days: float = 0.0) -> np.ndarray:
    """(U, I) freshness in [0, 1] of items created at `created` (I,) seen from each user's `now` (U,), both epoch
    seconds: with age = now - created - `peak_days` (days), 0.5 ** (age / half-life) for age >= 0, and for items
    younger than the peak (created after now - peak) 0.5 ** (-age / `future_half_life_days`), or 1 when that is
    0 (they count as new). An unknown (NaN) creation time gives 0.

    peak and future half-life matter when `now` is each user's own time (conf `recommend.blend.freshness_clock:
    user`): on MovieLens a user rarely rates a movie released after their last rating (it did not exist yet)
    and most often one released 1-3 years before it (the title year is read as 1 January).
    """
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    if peak_days < 0 or future_half_life_days < 0:
        raise ValueError(f"peak_days and future_half_life_days must be >= 0, got {peak_days}, "
                         f"{future_half_life_days}")
    age = (np.asarray(now, dtype=np.float64)[:, None] - np.asarray(created, dtype=np.float64)[None, :]) / 86400
    age = age - peak_days
    with np.errstate(invalid="ignore"):
        past = np.power(0.5, np.maximum(age, 0) / half_life_days)
        future = (np.power(0.5, np.maximum(-age, 0) / future_half_life_days) if future_half_life_days > 0
                  else np.ones_like(age))
    return np.where(np.isnan(age), 0.0, np.where(age >= 0, past, future))


def item_labels(tags: Sequence[str | None], descriptions: Sequence[str | None]) -> list[list[str]]:
    """Labels of each item for `content_features`: its '|'-separated tags (genres) as `genre:<tag>` and the
    comma-separated parts of its description (MovieLens: the users' tags) as `tag:<part>`, lowercased."""
    out = []
    for tag_text, description in zip(tags, descriptions):
        genres = [g.strip().lower() for g in (tag_text or "").split("|") if g.strip()]
        words = [t.strip().lower() for t in (description or "").split(",") if t.strip()]
        out.append([f"genre:{g}" for g in genres] + [f"tag:{t}" for t in words])
    return out


def cold_prior(cold: np.ndarray, freshness: np.ndarray, content: np.ndarray | None, content_weight: float,
               text: np.ndarray | None = None, text_weight: float = 0.0) -> np.ndarray:
    """(U, I) score of never-interacted items only (0 elsewhere): freshness + `content_weight` * content cosine
    + `text_weight` * text z-score.

    Cold items get nothing from the interaction components; with weight "cold" > 0 this prior is their whole
    score (`final_scores`): which of them this user is likely to reach next."""
    prior = np.array(freshness, dtype=np.float64, copy=True)
    if content is not None and content_weight:
        prior = prior + content_weight * content
    if text is not None and text_weight:
        prior = prior + text_weight * text
    return prior * np.asarray(cold, dtype=bool)


@dataclass
class InteractionModel:
    """What the interaction components need, fitted once per run on everyone's history."""

    warm: np.ndarray  # item indexes with a positive (EASE rows)
    ease: np.ndarray  # (W, W) EASE weights
    transitions: sparse.csr_matrix  # (I, I) sequential rules
    settings: BlendSettings
    graph_warm: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # RP3beta rows
    graph: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (G, G) RP3beta weights


def fit_interactions(positives: Sequence[Sequence[int]], sequences: Sequence[Sequence[int]], n_items: int,
                     settings: BlendSettings, graph: bool = False) -> InteractionModel:
    """EASE on the users' positives and sequential rules on their time-ordered interactions (any event);
    RP3beta only with `graph` (a second dense item x item matrix; it has not won a validation weight yet)."""
    positive = positive_matrix(positives, n_items)
    warm, weights = ease_weights(positive, settings.ease_lambda)
    model = InteractionModel(warm, weights, transition_matrix(sequences, n_items, settings.sequence_gap), settings)
    if graph:
        model.graph_warm, model.graph = rp3beta_weights(positive, settings.rp3_beta, settings.rp3_neighbours)
    return model


def components(model: InteractionModel, text_scores: np.ndarray, positives: Sequence[Sequence[int]],
               sequences: Sequence[Sequence[int]], popularity: np.ndarray, freshness: np.ndarray,
               content: sparse.spmatrix | None = None, cold: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The blend's components for a block of users (rows of `text_scores`, `positives`, `sequences`).

    model: per-user z-score of the text two-tower score (defined for every item, cold ones included);
    cooccurrence, graph (when fitted), sequence: `scale_rows` of EASE, RP3beta and sequential-rule scores (EASE
    and RP3beta read the `recency_half_life` profile); popularity (I,) and freshness ((I,) or (U, I)) as given,
    in [0, 1]; content (given `content_features` (I, F)): `content_scores` of the same profile, in [0, 1];
    cold (given the (I,) never-interacted mask): `cold_prior` = freshness + `cold_content` * content on cold
    items, 0 on the others.
    """
    n_items = text_scores.shape[1]
    text = np.asarray(text_scores, dtype=np.float64)
    mean, std = text.mean(axis=1, keepdims=True), text.std(axis=1, keepdims=True)
    s = model.settings
    profile = profile_matrix(positives, n_items, s.recency_half_life)
    fresh = np.asarray(freshness, np.float64)
    similar = None if content is None else content_scores(profile, content)
    z = (text - mean) / np.where(std > 1e-12, std, 1.0)
    return {"model": z,
            "cooccurrence": scale_rows(ease_scores(profile, model.warm, model.ease)),
            **({"graph": scale_rows(ease_scores(profile, model.graph_warm, model.graph))} if model.graph.size else {}),
            "sequence": scale_rows(sequence_scores(sequences, model.transitions, s.sequence_recent,
                                                   s.sequence_decay)),
            "popularity": np.asarray(popularity, dtype=np.float64), "freshness": fresh,
            **({} if similar is None else {"content": similar}),
            **({} if cold is None else {"cold": cold_prior(cold, np.broadcast_to(fresh, text.shape), similar,
                                                           s.cold_content, z, s.cold_text)})}


def final_scores(parts: Mapping[str, np.ndarray], weights: Mapping[str, float], cold: np.ndarray,
                 exclude: Sequence[np.ndarray], cold_slot: int, cold_freshness: float = 0.0,
                 cold_min_prior: float = 0.0) -> np.ndarray:
    """(U, I) ranking scores: the weighted blend, then the cold-start slot (`promote_cold`), whose item is
    chosen by the blend + `cold_freshness` * freshness. For cold items the blend is text, content and freshness,
    or with weight "cold" > 0 only w_cold * the cold prior (`cold_prior`, which holds those three itself). With `cold_min_prior` > 0 (and a "cold" component) a user's cold item is promoted only
    when its prior reaches that value: an old movie nobody rated is not worth a top-K place for everyone."""
    total = np.broadcast_to(blend(parts, weights), np.shape(parts["model"]))
    if weights.get("cold") and "cold" in parts and np.any(cold):  # the prior is a cold item's whole score
        total = np.array(total, dtype=np.float64, copy=True)
        total[:, cold] = weights["cold"] * np.broadcast_to(parts["cold"], total.shape)[:, cold]
    rank = total + cold_freshness * parts["freshness"] if cold_freshness else None
    promoted = promote_cold(total, cold, exclude, cold_slot, rank)
    if cold_min_prior <= 0 or "cold" not in parts or not cold_slot:
        return promoted
    prior = np.broadcast_to(parts["cold"], np.shape(promoted))
    keep = (promoted == total) | (prior >= cold_min_prior)  # drop promotions of items below the bar
    return np.where(keep, promoted, total)
