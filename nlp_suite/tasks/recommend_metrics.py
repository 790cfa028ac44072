"""Ranking metrics for recommendation, as plain functions with binary relevance.

Per-list functions take `ranked` (item ids, best first) and `relevant` (the ids the user did pick); averaging
them over users gives the reported figures (the mean of `mrr` over users is the MRR). `target_ranks` and
`metrics_from_ranks` compute the same numbers in bulk for the usual one-held-out-item-per-user evaluation.

Hand-checkable example: ranked = [a, b, c, d], relevant = {b}
    hit_rate_at_k(k=1) = 0, hit_rate_at_k(k=2) = 1
    ndcg_at_k(k=10) = (1 / log2(2 + 1)) / 1 = 0.6309
    mrr = 1 / 2
    auc = 2 / 3 (b is above c and d, below a)
"""
from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Hashable

import numpy as np
import torch


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def hit_rate_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """1.0 when at least one relevant item is among the first `k`, else 0.0."""
    _check_k(k)
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """Normalised discounted cumulative gain at `k`: DCG / ideal DCG, gains 1 for relevant items.

    DCG = sum over positions i = 1..k holding a relevant item of 1 / log2(i + 1); the ideal DCG puts all
    relevant items first. 0.0 when there is no relevant item.
    """
    _check_k(k)
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(position + 2) for position, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(position + 2) for position in range(min(k, len(relevant))))
    return dcg / ideal


def tied_ndcg_at_k(scores: Sequence[float], relevant: Sequence[bool], k: int = 10) -> float:
    """nDCG@k of the ranking by `scores` (higher first), expected over a uniformly random order of tied scores.

    A group of tied items at positions a..b-1 holding r relevant out of n gains r / n of each of its positions'
    discounts, so ties favour nobody (not item order, not the relevant items): a constant score gets exactly
    the chance value, the expected nDCG@k of a random ranking. 0.0 when nothing is relevant.
    """
    _check_k(k)
    values, wanted = np.asarray(scores, dtype=np.float64), np.asarray(relevant, dtype=bool)
    total = int(wanted.sum())
    if total == 0:
        return 0.0
    order = np.argsort(-values, kind="stable")
    values, wanted = values[order], wanted[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    discount = np.zeros(len(values))
    discount[:k] = 1.0 / np.log2(np.arange(2, min(k, len(values)) + 2))
    discount_sum, relevant_sum = np.r_[0.0, np.cumsum(discount)], np.r_[0, np.cumsum(wanted)]
    dcg = ((relevant_sum[ends] - relevant_sum[starts]) / (ends - starts)
           * (discount_sum[ends] - discount_sum[starts])).sum()
    return float(dcg / discount[:min(k, total)].sum())


def mrr(ranked: Sequence[Hashable], relevant: Collection[Hashable]) -> float:
    """Reciprocal rank of the first relevant item (1 / its 1-based position); 0.0 when none is ranked."""
    for position, item in enumerate(ranked, start=1):
        if item in relevant:
            return 1.0 / position
    return 0.0


def auc(ranked: Sequence[Hashable], relevant: Collection[Hashable]) -> float:
    """Area under the ROC curve of one full ranking: the share of (relevant, non-relevant) pairs ordered right.

    `ranked` must hold every candidate; raises ValueError when it has no relevant or no non-relevant item.
    """
    positives = sum(1 for item in ranked if item in relevant)
    negatives = len(ranked) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs at least one relevant and one non-relevant item in the ranking")
    correct, negatives_seen = 0, 0
    for item in ranked:  # each relevant item beats every non-relevant item ranked after it
        if item in relevant:
            correct += negatives - negatives_seen
        else:
            negatives_seen += 1
    return correct / (positives * negatives)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based rank of each row's target among its candidates, and the number of candidates per row.

    scores: (U, N) model scores; targets: (U,) column of the held-out item; exclude: optional (U, N) bool of
    items that are not candidates (e.g. the user's history; the target itself is never excluded).
    Ties count against the target (rank = 1 + items scoring >= the target, other than itself), so a
    constant model cannot look good.
    """
    scores = scores.float()
    rows = torch.arange(scores.size(0), device=scores.device)
    candidates = torch.ones_like(scores, dtype=torch.bool) if exclude is None else ~exclude.bool()
    candidates[rows, targets] = True
    target_scores = scores[rows, targets][:, None]
    better = (scores >= target_scores) & candidates
    better[rows, targets] = False
    return better.sum(dim=1) + 1, candidates.sum(dim=1)


def metrics_from_ranks(ranks: torch.Tensor, candidates: torch.Tensor, k: int = 10) -> dict[str, float]:
    """Mean ndcg@k, hit@k, MRR and AUC over users with one relevant item each, from `target_ranks`.

    With one relevant item at rank r among n candidates: ndcg@k = 1 / log2(r + 1) if r <= k else 0,
    hit@k = [r <= k], reciprocal rank = 1 / r, AUC = (n - r) / (n - 1).
    """
    _check_k(k)
    if ranks.numel() == 0:
        return {f"ndcg@{k}": 0.0, f"hit@{k}": 0.0, "mrr": 0.0, "auc": 0.0}
    ranks, candidates = ranks.double(), candidates.double()
    inside = ranks <= k
    ndcg = torch.where(inside, 1.0 / torch.log2(ranks + 1), torch.zeros_like(ranks))
    area = (candidates - ranks) / (candidates - 1).clamp(min=1)
    return {f"ndcg@{k}": float(ndcg.mean()), f"hit@{k}": float(inside.double().mean()),
            "mrr": float((1.0 / ranks).mean()), "auc": float(area.mean())}
