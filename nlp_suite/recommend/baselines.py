"""Recommendation baselines as plain functions (Microsoft-Recommenders style): most-popular, item-kNN, BPR-MF.

Every baseline takes the training interactions as a binary user x item matrix (`interaction_matrix`, scipy CSR,
1 = a positive in train) and returns a dense (U, I) float32 score matrix; higher is better. Excluding each user's
seen items and cutting the top K is the caller's job (`top_k`), so every model goes through the same ranking.

* `most_popular_scores`: the number of users with a positive on the item, the same row for everyone.
* `item_knn_scores`: item-item cosine similarity of co-occurrence columns, s(i, j) = |U_i & U_j| / sqrt(|U_i||U_j|);
  a user's score for j sums s(i, j) over the user's items i (optionally over the `neighbours` most similar i only).
* `bpr_mf`: matrix factorisation trained with the BPR pairwise loss (Rendle et al. 2009) on uniformly sampled
  negatives, in torch; `bpr_scores` gives u . v_j + b_j.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse


def interaction_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sparse.csr_matrix:
    """(U, I) binary CSR matrix with a 1 at each (user, item) pair (repeated pairs count once)."""
    data = np.ones(len(users), dtype=np.float32)
    matrix = sparse.csr_matrix((data, (np.asarray(users), np.asarray(items))), shape=(n_users, n_items))
    matrix.data[:] = 1.0  # duplicates were summed by the constructor
    return matrix


def most_popular_scores(train: sparse.spmatrix) -> np.ndarray:
    """(U, I) scores: every user gets each item's count of training users."""
    counts = np.asarray(train.sum(axis=0), dtype=np.float32).ravel()  # (I,)
    return np.broadcast_to(counts, train.shape).copy()


def item_similarity(train: sparse.spmatrix) -> sparse.csr_matrix:
    """(I, I) cosine similarity of item columns (co-occurrence over users), zero diagonal."""
    x = sparse.csr_matrix(train, dtype=np.float32)
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())  # (I,): sqrt(users per item) for a binary matrix
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    scaled = x @ sparse.diags(inverse)  # (U, I): columns of unit length
    similarity = (scaled.T @ scaled).tocsr()
    similarity.setdiag(0.0)
    similarity.eliminate_zeros()
    return similarity


def keep_top_neighbours(similarity: sparse.csr_matrix, neighbours: int) -> sparse.csr_matrix:
    """Keep, in each row i, the `neighbours` largest similarities (the items most like i)."""
    rows, cols, values = [], [], []
    for i in range(similarity.shape[0]):
        start, stop = similarity.indptr[i], similarity.indptr[i + 1]
        if stop == start:
            continue
        row_values = similarity.data[start:stop]
        keep = np.argsort(-row_values, kind="stable")[:neighbours]
        rows.append(np.full(len(keep), i))
        cols.append(similarity.indices[start:stop][keep])
        values.append(row_values[keep])
    if not rows:
        return sparse.csr_matrix(similarity.shape, dtype=np.float32)
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                             shape=similarity.shape)


def item_knn_scores(train: sparse.spmatrix, neighbours: int | None = None) -> np.ndarray:
    """(U, I) item-kNN scores: sum over the user's items i of cosine(i, j); `neighbours` limits each i to its
    most similar items (None = all)."""
    similarity = item_similarity(train)
    if neighbours is not None:
        similarity = keep_top_neighbours(similarity, neighbours)
    x = sparse.csr_matrix(train, dtype=np.float32)
    return np.asarray((x @ similarity).todense(), dtype=np.float32)


@dataclass(frozen=True)
class BPRConfig:
    """BPR-MF settings."""

    dim: int = 64  # latent factors
    epochs: int = 20  # passes over the training positives
    lr: float = 0.005  # Adam learning rate (0.01+ overfits in 20 epochs on MovieLens)
    reg: float = 1e-3  # L2 on the factors of each sampled triple
    batch_size: int = 1024  # triples per step
    seed: int = 0


@dataclass
class BPRModel:
    """Learned factors: user (U, D), item (I, D), item bias (I,)."""

    users: np.ndarray
    items: np.ndarray
    bias: np.ndarray
    seconds: float = 0.0


def sample_bpr_negatives(train: sparse.csr_matrix, users: np.ndarray, rng: np.random.Generator,
                         tries: int = 10) -> np.ndarray:
    """One uniformly drawn item per user that is not among the user's training positives (best effort)."""
    n_items = train.shape[1]
    negatives = rng.integers(n_items, size=len(users))
    for _ in range(tries):  # resample the collisions; positives are a tiny share of the catalog
        bad = np.asarray(train[users, negatives]).ravel() > 0
        if not bad.any():
            break
        negatives[bad] = rng.integers(n_items, size=int(bad.sum()))
    return negatives


def bpr_mf(train: sparse.spmatrix, config: BPRConfig = BPRConfig()) -> BPRModel:
    """Fit BPR-MF on the (U, I) binary training matrix: maximise log sigmoid(x_ui - x_uj) - reg * ||factors||^2."""
    started = time.perf_counter()
    train = sparse.csr_matrix(train)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    n_users, n_items = train.shape
    users = torch.nn.Parameter(torch.randn(n_users, config.dim, generator=generator) * 0.1)
    items = torch.nn.Parameter(torch.randn(n_items, config.dim, generator=generator) * 0.1)
    bias = torch.nn.Parameter(torch.zeros(n_items))
    optimizer = torch.optim.Adam([users, items, bias], lr=config.lr)
    coo = train.tocoo()
    pair_users, pair_items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    for _ in range(config.epochs):
        order = rng.permutation(len(pair_users))
        for start in range(0, len(order), config.batch_size):
            chunk = order[start:start + config.batch_size]
            u, i = pair_users[chunk], pair_items[chunk]
            j = sample_bpr_negatives(train, u, rng)
            u_t, i_t, j_t = (torch.from_numpy(a) for a in (u, i, j))
            pu, qi, qj = users[u_t], items[i_t], items[j_t]  # (B, D) each
            difference = (pu * (qi - qj)).sum(dim=1) + bias[i_t] - bias[j_t]  # (B,)
            penalty = config.reg * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / len(chunk)
            loss = -torch.nn.functional.logsigmoid(difference).mean() + penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return BPRModel(users=users.detach().numpy().copy(), items=items.detach().numpy().copy(),
                    bias=bias.detach().numpy().copy(), seconds=time.perf_counter() - started)


def bpr_scores(model: BPRModel) -> np.ndarray:
    """(U, I) scores u . v_j + b_j."""
    return (model.users @ model.items.T + model.bias[None, :]).astype(np.float32)


def top_k(scores: np.ndarray, exclude: sparse.spmatrix | None, k: int = 10) -> np.ndarray:
    """(U, k) item indexes of each row's k best scores, best first, never an excluded (nonzero) item."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None:
        coo = sparse.coo_matrix(exclude)
        scores[coo.row, coo.col] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (U, k) unordered
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
