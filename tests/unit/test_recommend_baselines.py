"""Baselines on hand-made interaction matrices: most-popular, item-kNN cosine, BPR-MF, top-k with exclusion."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nlp_suite.recommend.baselines import (BPRConfig, bpr_mf, bpr_scores, interaction_matrix, item_knn_scores,
                                           item_similarity, keep_top_neighbours, most_popular_scores, top_k)

# 3 users x 4 items:     i0 i1 i2 i3
#                   u0 [ 1  1  0  0 ]
#                   u1 [ 1  0  1  0 ]
#                   u2 [ 1  1  0  0 ]
USERS = np.array([0, 0, 1, 1, 2, 2, 2])
ITEMS = np.array([0, 1, 0, 2, 0, 1, 1])  # (2, 1) twice: counted once


def matrix():
    return interaction_matrix(USERS, ITEMS, 3, 4)


def test_interaction_matrix_is_binary():
    x = matrix().toarray()
    assert x.tolist() == [[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]]


def test_most_popular_counts_users_per_item():
    scores = most_popular_scores(matrix())
    assert scores.shape == (3, 4)
    assert scores[0].tolist() == [3, 2, 1, 0] and (scores == scores[0]).all()


def test_item_similarity_is_cosine_of_columns():
    similarity = item_similarity(matrix()).toarray()
    # i0 has users {0,1,2}, i1 {0,2}, i2 {1}: cos(i0,i1) = 2/sqrt(3*2), cos(i0,i2) = 1/sqrt(3), cos(i1,i2) = 0
    assert similarity[0, 1] == pytest.approx(2 / math.sqrt(6))
    assert similarity[0, 2] == pytest.approx(1 / math.sqrt(3))
    assert similarity[1, 2] == 0 and np.allclose(np.diag(similarity), 0)
    assert np.allclose(similarity, similarity.T)


def test_item_knn_scores_sum_similarities_of_the_users_items():
    scores = item_knn_scores(matrix())
    # u1 has i0 and i2: score(i1) = cos(i0,i1) + cos(i2,i1) = 2/sqrt(6)
    assert scores[1, 1] == pytest.approx(2 / math.sqrt(6))
    assert scores[0, 3] == 0  # nobody has i3
    # one neighbour per item: i0 keeps only i1 (its most similar), so u1 (i0, i2) gets nothing for i2 from i0
    limited = keep_top_neighbours(item_similarity(matrix()), 1).toarray()
    assert (limited > 0).sum(axis=1).tolist() == [1, 1, 1, 0]
    assert item_knn_scores(matrix(), neighbours=1)[1, 1] == pytest.approx(2 / math.sqrt(6))


def test_top_k_excludes_and_orders():
    scores = np.array([[0.1, 0.9, 0.5, 0.7]], dtype=np.float32)
    exclude = interaction_matrix(np.array([0]), np.array([1]), 1, 4)
    assert top_k(scores, exclude, 2).tolist() == [[3, 2]]
    assert top_k(scores, None, 10).tolist() == [[1, 3, 2, 0]]


def test_bpr_learns_to_rank_positives_above_the_rest():
    # Two taste groups: users 0-9 like items 0-4, users 10-19 like items 5-9.
    users = np.repeat(np.arange(20), 4)
    rng = np.random.default_rng(0)
    items = np.array([rng.choice(5, 4, replace=False) + (0 if u < 10 else 5) for u in range(20)]).ravel()
    x = interaction_matrix(users, items, 20, 10)
    model = bpr_mf(x, BPRConfig(dim=8, epochs=60, lr=0.05, batch_size=16))
    scores = bpr_scores(model)
    assert scores.shape == (20, 10) and model.seconds > 0
    in_group = np.r_[scores[:10, :5].mean(), scores[10:, 5:].mean()]
    out_group = np.r_[scores[:10, 5:].mean(), scores[10:, :5].mean()]
    assert (in_group > out_group).all()
