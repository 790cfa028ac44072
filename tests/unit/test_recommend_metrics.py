"""Ranking metrics against hand-computed examples, and the bulk rank-based path against the per-list one."""
from __future__ import annotations

import math

import pytest
import torch

from nlp_suite.tasks.recommend_metrics import (auc, hit_rate_at_k, metrics_from_ranks, mrr, ndcg_at_k,
                                               target_ranks, tied_ndcg_at_k)

RANKED = ["a", "b", "c", "d"]


def test_hit_rate_at_k():
    assert hit_rate_at_k(RANKED, {"b"}, k=1) == 0.0
    assert hit_rate_at_k(RANKED, {"b"}, k=2) == 1.0
    assert hit_rate_at_k(RANKED, {"z"}, k=10) == 0.0
    assert hit_rate_at_k(RANKED, {"a", "d"}, k=1) == 1.0


def test_ndcg_at_k_hand_computed():
    # One relevant item at position 2: DCG = 1/log2(3) = 0.6309, ideal DCG = 1.
    assert ndcg_at_k(RANKED, {"b"}, k=10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(RANKED, {"b"}, k=10) == pytest.approx(0.63093, abs=1e-5)
    assert ndcg_at_k(RANKED, {"b"}, k=1) == 0.0  # outside the cut-off
    assert ndcg_at_k(RANKED, {"a"}, k=10) == 1.0
    # Two relevant at positions 1 and 3: DCG = 1 + 1/2 = 1.5; ideal = 1 + 1/log2(3) = 1.6309 -> 0.91972.
    assert ndcg_at_k(RANKED, {"a", "c"}, k=10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(RANKED, {"a", "c"}, k=10) == pytest.approx(0.91972, abs=1e-5)
    # k=2 keeps only "a" of the ranking, and the ideal at k=2 is 1 + 1/log2(3).
    assert ndcg_at_k(RANKED, {"a", "c"}, k=2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(RANKED, set(), k=10) == 0.0


def test_mrr_hand_computed():
    assert mrr(RANKED, {"c"}) == pytest.approx(1 / 3)
    assert mrr(RANKED, {"d", "b"}) == pytest.approx(1 / 2)  # the first relevant counts
    assert mrr(RANKED, {"z"}) == 0.0


def test_auc_hand_computed():
    # b beats c and d but not a: 2 of 3 pairs.
    assert auc(RANKED, {"b"}) == pytest.approx(2 / 3)
    # a beats b, d; c beats d, loses to b: 3 of 4 pairs.
    assert auc(RANKED, {"a", "c"}) == pytest.approx(3 / 4)
    assert auc(RANKED, {"a"}) == 1.0
    assert auc(RANKED, {"d"}) == 0.0
    with pytest.raises(ValueError):
        auc(RANKED, set())
    with pytest.raises(ValueError):
        auc(RANKED, set(RANKED))


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        ndcg_at_k(RANKED, {"a"}, k=0)
    with pytest.raises(ValueError):
        hit_rate_at_k(RANKED, {"a"}, k=0)


def test_target_ranks_with_exclusion_and_ties():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1],   # target col 1: rank 2
                           [0.9, 0.8, 0.7, 0.1],   # target col 2, col 0 excluded: rank 2 of 3 candidates
                           [0.5, 0.5, 0.5, 0.5]])  # target col 0, all tied: ties count against it -> rank 4
    targets = torch.tensor([1, 2, 0])
    exclude = torch.tensor([[False, False, False, False],
                            [True, False, False, False],
                            [False, False, False, False]])
    ranks, counts = target_ranks(scores, targets, exclude)
    assert ranks.tolist() == [2, 2, 4]
    assert counts.tolist() == [4, 3, 4]
    # The target itself is never excluded, even if the mask says so.
    ranks, counts = target_ranks(scores[:1], torch.tensor([1]), torch.tensor([[False, True, False, False]]))
    assert ranks.tolist() == [2] and counts.tolist() == [4]


def test_metrics_from_ranks_hand_computed():
    metrics = metrics_from_ranks(torch.tensor([1, 3, 20]), torch.tensor([21, 21, 21]), k=10)
    assert metrics["hit@10"] == pytest.approx(2 / 3)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 0) / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 20) / 3)
    assert metrics["auc"] == pytest.approx(((20 / 20) + (18 / 20) + (1 / 20)) / 3)


def test_bulk_metrics_match_per_list_functions():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 15, generator=generator)
    targets = torch.randint(15, (6,), generator=generator)
    ranks, counts = target_ranks(scores, targets)
    bulk = metrics_from_ranks(ranks, counts, k=5)
    per_list = {"ndcg@5": [], "hit@5": [], "mrr": [], "auc": []}
    for row, target in enumerate(targets.tolist()):
        ranked = torch.argsort(scores[row], descending=True).tolist()
        per_list["ndcg@5"].append(ndcg_at_k(ranked, {target}, k=5))
        per_list["hit@5"].append(hit_rate_at_k(ranked, {target}, k=5))
        per_list["mrr"].append(mrr(ranked, {target}))
        per_list["auc"].append(auc(ranked, {target}))
    for name, values in per_list.items():
        assert bulk[name] == pytest.approx(sum(values) / len(values)), name


def test_tied_ndcg_without_ties_is_ndcg():
    scores = [0.9, 0.8, 0.3, 0.1]  # ranks a, b, c, d
    assert tied_ndcg_at_k(scores, [False, True, False, False]) == pytest.approx(ndcg_at_k(RANKED, {"b"}))
    assert tied_ndcg_at_k(scores, [True, False, True, False], k=2) == pytest.approx(ndcg_at_k(RANKED, {"a", "c"}, 2))
    assert tied_ndcg_at_k(scores, [False] * 4) == 0.0


def test_tied_ndcg_of_a_constant_score_is_chance():
    # 1 relevant of 4, all tied: each position holds it with probability 1/4.
    chance = sum(0.25 / math.log2(i + 2) for i in range(4))
    assert tied_ndcg_at_k([1.0] * 4, [False, False, True, False]) == pytest.approx(chance)
    assert tied_ndcg_at_k([1.0] * 4, [True, False, False, False]) == pytest.approx(chance)  # item order: no luck
    # A tie group after a clear winner: the relevant item shares positions 2 and 3.
    expected = 0.5 * (1 / math.log2(3) + 1 / math.log2(4))
    assert tied_ndcg_at_k([5.0, 1.0, 1.0], [False, True, False]) == pytest.approx(expected)
    with pytest.raises(ValueError):
        tied_ndcg_at_k([1.0], [True], k=0)
