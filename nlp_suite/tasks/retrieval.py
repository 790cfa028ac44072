"""Question -> passage retrieval: a dual encoder on the shared encoder, blended with lexical overlap.

* Dense score: the shared Encoder reads the question and the passage (same weights), concat pooling, one linear
  projection per side, L2-normalised: cosine similarity. Trained with in-batch negatives (softmax over the batch's
  distinct passages, scaled by `scale`), so every other answer in a batch is a negative for free. With
  `group_size > 0` a batch holds `group_size` pairs from each of a few groups (intents), so most in-batch
  negatives are answers to *the same intent*: the hard case, where answers differ only in details.
* Interaction score (a small re-ranker on the same encoder): K-NRM kernels (Xiong et al. 2017) over the cosine
  matrix of question and passage token vectors (embeddings and projected encoder states), trained with the same
  in-batch softmax. It sees which question words the answer repeats, which a pooled vector blurs.
* Lexical features: TF-IDF cosine (word 1-2 and char 2-5 grams) and the idf-weighted share of the question's
  words, bigrams and trigrams found in the passage and in its first `HEAD_WORDS` words. Support answers often
  restate the request ("I understand you want to cancel purchase #123..."), which a dense LSTM vector blurs.
* Blend: score = weights . features, weights fitted by pairwise logistic regression on the *validation* split
  (true passage vs same-group and other-group distractors), so nothing is tuned on test. The blended score's
  `similarity_threshold` (also chosen on validation) tells a real match from "the answer is not in the KB":
  positives are top-1 scores of correctly answered validation questions, negatives the top score after removing
  every passage of the question's group (leave-the-answer-out).

Data: `task.pairs` names a dataset with responses (bitext: request -> agent response, group = intent, split by
`benchmark_splits`), else the FAQ (`data.faq`: each question -> its intent's answer, group = intent).
"""
from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from nlp_suite.models.encoder import Encoder
from nlp_suite.models.pooling import ConcatPooling
from nlp_suite.tasks.base import Task
from nlp_suite.tasks.classification import stratified_split
from nlp_suite.text.batching import bucketed_batches, pad_batch
from nlp_suite.text.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

HEAD_WORDS = 40  # answers restate the question in their opening; overlap there is weighted separately
TOKEN = re.compile(r"[a-z0-9$#@%]+(?:'[a-z]+)?")
FEATURES = ("dense", "interaction", "tfidf_word", "tfidf_char", "cover_1", "cover_1_head", "cover_2", "cover_2_head",
            "cover_3", "cover_3_head")
LEXICAL = FEATURES[2:]
DEFAULT_WEIGHTS = (1.0, 0.1, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # before validation has chosen any
TIE_TOLERANCE = 1e-6  # scores this close tie at a search's cut-off (batched float32 encoding differs by ~1e-7)
MAX_CANDIDATES = 64  # passages each validation question is ranked against (all of them when fewer)
DISTRACTORS = 9  # per question and kind (same group / other group) for fitting the blend


@dataclass
class Pairs:
    """Row-aligned questions, passages and groups (intent names; '' when unknown)."""

    queries: list[str]
    passages: list[str]
    groups: list[str]

    def __len__(self) -> int:
        return len(self.queries)


# ------------------------------------------------------------------------------------------------ lexical


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, keeping numbers and ids (#00108, $299)."""
    return TOKEN.findall(text.lower())


def ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """Distinct n-grams of a token list."""
    return set(zip(*[words[i:] for i in range(n)]))


class _TextGrams:
    """n-gram sets of one passage, full and head (cached per passage)."""

    __slots__ = ("full", "head")

    def __init__(self, text: str):
        words = tokens(text)
        head = tokens(" ".join(text.split()[:HEAD_WORDS]))
        self.full = [ngrams(words, n) for n in (1, 2, 3)]
        self.head = [ngrams(head, n) for n in (1, 2, 3)]


class LexicalMatcher:
    """TF-IDF vectorisers and idf weights fitted on a corpus; lexical features of question/passage pairs."""

    def __init__(self, corpus: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        corpus = [text for text in corpus if text.strip()] or ["empty"]
        self.word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True).fit(corpus)
        self.char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                    min_df=2 if len(corpus) > 50 else 1).fit(corpus)
        counts = Counter(word for text in corpus for word in set(tokens(text)))
        self.documents = len(corpus)
        self.df = counts

    def idf(self, word: str) -> float:
        """Smoothed inverse document frequency (unknown words weigh the most)."""
        return math.log((self.documents + 1) / (self.df.get(word, 0) + 1)) + 1.0

    def vectors(self, texts: Sequence[str]):
        """(N, V) L2-normalised word and char TF-IDF matrices."""
        from sklearn.preprocessing import normalize

        return normalize(self.word.transform(texts)), normalize(self.char.transform(texts))

    def coverage(self, query: str, grams: _TextGrams) -> list[float]:
        """idf-weighted share of the query's 1/2/3-grams found in the passage, then in its head."""
        words = tokens(query)
        out_full, out_head = [], []
        for n in (1, 2, 3):
            query_grams = ngrams(words, n)
            weights = {g: sum(self.idf(w) for w in g) for g in query_grams}
            total = sum(weights.values()) or 1.0
            out_full.append(sum(w for g, w in weights.items() if g in grams.full[n - 1]) / total)
            out_head.append(sum(w for g, w in weights.items() if g in grams.head[n - 1]) / total)
        return [out_full[0], out_head[0], out_full[1], out_head[1], out_full[2], out_head[2]]

    def features(self, queries: Sequence[str], passages: Sequence[str], candidates: np.ndarray,
                 grams: Sequence[_TextGrams] | None = None, passage_vectors=None) -> np.ndarray:
        """(N, K, 8) lexical features of each query i against passages[candidates[i, k]] (`grams` and
        `passage_vectors` = `vectors(passages)` may be precomputed)."""
        grams = grams if grams is not None else [_TextGrams(p) for p in passages]
        q_word, q_char = self.vectors(queries)
        p_word, p_char = passage_vectors if passage_vectors is not None else self.vectors(passages)
        out = np.zeros((len(queries), candidates.shape[1], len(LEXICAL)), dtype=np.float32)
        for i, query in enumerate(queries):
            row = candidates[i]
            out[i, :, 0] = (p_word[row] @ q_word[i].T).toarray().ravel()
            out[i, :, 1] = (p_char[row] @ q_char[i].T).toarray().ravel()
            for k, j in enumerate(row):
                out[i, k, 2:] = self.coverage(query, grams[j])
        return out


# ------------------------------------------------------------------------------------------------ model


KERNELS = (1.0, 0.9, 0.7, 0.5, 0.3, 0.1, -0.1, -0.3, -0.5)  # K-NRM kernel centres; 1.0 = exact match
KERNEL_SIGMA = 0.1
EXACT_SIGMA = 1e-3


def kernel_features(query: torch.Tensor, query_mask: torch.Tensor, passages: torch.Tensor,
                    passage_mask: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """K-NRM soft term frequencies, log1p, summed over query tokens.

    query (B, Tq, E) and mask (B, Tq); passages (P, Tp, E) with mask (P, Tp) for every pair (-> (B, P, K)), or
    (B, C, Tp, E) with mask (B, C, Tp) for C candidates per query (-> (B, C, K)). Vectors are unit length.
    """
    if passages.dim() == 3:
        similarity = torch.einsum("bqe,pte->bpqt", query, passages)  # (B, P, Tq, Tp)
        p_mask = passage_mask[None, :, None, :]  # (1, P, 1, Tp)
    else:
        similarity = torch.einsum("bqe,bcte->bcqt", query, passages)  # (B, C, Tq, Tp)
        p_mask = passage_mask[:, :, None, :]  # (B, C, 1, Tp)
    q_mask = query_mask[:, None, :].to(similarity.dtype)  # (B, 1, Tq)
    out = []
    for centre, width in zip(mu, sigma):  # one kernel at a time: (B, P, Tq, Tp) is the largest tensor
        soft = torch.exp(-((similarity - centre) ** 2) / (2 * width**2)) * p_mask  # (B, P, Tq, Tp)
        out.append((torch.log1p(soft.sum(dim=3)) * q_mask).sum(dim=2))  # (B, P)
    return torch.stack(out, dim=2)  # (B, P, K)


class DualEncoder(nn.Module):
    """Shared encoder, two scorers: a dense dual encoder (unit vectors, cosine) and a K-NRM interaction scorer
    over token embeddings and encoder states (sees which question words the passage repeats)."""

    def __init__(self, encoder: Encoder, dim: int = 128, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder  # named `encoder` so the loop gives it its own learning-rate group
        self.pool = ConcatPooling(encoder.config.hidden_dim, encoder.config.bidirectional)
        width = self.pool.output_dim(encoder.output_dim)
        self.dropout = nn.Dropout(dropout)
        self.query_proj = nn.Linear(width, dim)
        self.passage_proj = nn.Linear(width, dim)
        self.token_proj = nn.Linear(encoder.output_dim, dim)  # contextual token vectors for the interaction
        self.register_buffer("mu", torch.tensor(KERNELS), persistent=False)
        self.register_buffer("sigma", torch.tensor([EXACT_SIGMA if m == 1.0 else KERNEL_SIGMA for m in KERNELS]),
                             persistent=False)
        self.match = nn.Linear(2 * len(KERNELS), 1)
        self.dim = dim

    def represent(self, ids: torch.Tensor, lengths: torch.Tensor, side: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D) unit vector, (B, T, E + D) unit token vectors [embedding | state], (B, T) mask."""
        states, mask = self.encoder(ids, lengths)  # (B, T, H), (B, T)
        pooled = self.dropout(self.pool(states, mask))  # (B, 3H)
        projection = self.query_proj if side == "query" else self.passage_proj
        vector = F.normalize(projection(pooled).float(), dim=-1)  # (B, D)
        embedded = F.normalize(self.encoder.embedding(ids).float(), dim=-1)  # (B, T, E): exact and soft matches
        contextual = F.normalize(self.token_proj(states).float(), dim=-1)  # (B, T, D)
        return vector, torch.cat([embedded, contextual], dim=2), mask

    def interaction(self, query: torch.Tensor, query_mask: torch.Tensor, passages: torch.Tensor,
                    passage_mask: torch.Tensor) -> torch.Tensor:
        """(B, P) or (B, C) interaction scores (see `kernel_features` for the shapes)."""
        split = self.encoder.config.embed_dim
        parts = [kernel_features(query[..., :split], query_mask, passages[..., :split], passage_mask, self.mu,
                                 self.sigma),
                 kernel_features(query[..., split:], query_mask, passages[..., split:], passage_mask, self.mu,
                                 self.sigma)]
        return self.match(torch.cat(parts, dim=-1)).squeeze(-1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, side: str = "query") -> torch.Tensor:
        return self.represent(ids, lengths, side)[0]  # (B, D)


@dataclass
class Encoded:
    """Dense vectors (N, D) and padded unit token vectors (N, T, E) with mask (N, T) of N texts, on CPU."""

    vectors: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor


@torch.no_grad()
def encode(model: DualEncoder, ids: Sequence[Sequence[int]], pad_id: int, side: str,
           batch_size: int = 128) -> Encoded:
    """Encode tokenized texts (eval mode, length-bucketed)."""
    model.eval()
    device = next(model.parameters()).device
    longest = max((len(x) for x in ids), default=1)
    width = model.encoder.config.embed_dim + model.dim
    out = Encoded(torch.zeros(len(ids), model.dim), torch.zeros(len(ids), longest, width),
                  torch.zeros(len(ids), longest, dtype=torch.bool))
    lengths = [len(x) for x in ids]
    for batch in bucketed_batches(lengths, batch_size, shuffle=False):
        padded, batch_lengths = pad_batch([ids[i] for i in batch], pad_id)
        vector, token_vectors, mask = model.represent(padded.to(device), batch_lengths.to(device), side)
        out.vectors[batch] = vector.cpu()
        out.tokens[batch, : padded.size(1)] = token_vectors.cpu()
        out.mask[batch, : padded.size(1)] = mask.cpu()
    return out


@torch.no_grad()
def candidate_scores(model: DualEncoder, queries: Encoded, passages: Encoded, candidates: np.ndarray,
                     chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) dense cosines and (N, C) interaction scores of query i against passages[candidates[i]]."""
    model.eval()
    index = torch.as_tensor(candidates)
    dense = torch.einsum("nd,ncd->nc", queries.vectors, passages.vectors[index])  # (N, C)
    inter = torch.zeros(candidates.shape)
    for start in range(0, len(candidates), chunk):
        rows = slice(start, start + chunk)
        q_len = int(queries.mask[rows].sum(dim=1).max())
        p_len = int(passages.mask[index[rows]].sum(dim=2).max())
        inter[rows] = model.interaction(queries.tokens[rows, :q_len], queries.mask[rows, :q_len],
                                        passages.tokens[index[rows], :p_len], passages.mask[index[rows], :p_len])
    return dense.numpy().astype(np.float64), inter.numpy().astype(np.float64)


# ------------------------------------------------------------------------------------------------ ranking


def rank_metrics(scores: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Recall@1/2/5 and MRR when column 0 of (N, K) scores is the true passage (ties count against it)."""
    rank = (scores[:, 1:] >= scores[:, :1]).sum(axis=1) + 1  # (N,)
    out = {f"{prefix}recall@{k}": float((rank <= k).mean()) for k in (1, 2, 5)}
    out[f"{prefix}mrr"] = float((1.0 / rank).mean())
    return out


def fit_blend(features: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Weights of a pairwise logistic regression: (N, K, F) features with the true passage at k=0 -> (F,)."""
    from sklearn.linear_model import LogisticRegression

    diffs = (features[:, :1, :] - features[:, 1:, :]).reshape(-1, features.shape[2])  # (N*(K-1), F)
    x = np.concatenate([diffs, -diffs])
    y = np.r_[np.ones(len(diffs)), np.zeros(len(diffs))]
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y)
    return model.coef_[0].astype(np.float64)


def choose_threshold(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The cut with the best balanced accuracy between matched (>=) and not-in-KB (<) top scores."""
    if len(positives) == 0 or len(negatives) == 0:
        return float(np.median(positives)) if len(positives) else 0.0
    grid = np.unique(np.concatenate([positives, negatives]))
    best, best_score = float(grid[0]), -1.0
    for cut in grid:
        score = 0.5 * ((positives >= cut).mean() + (negatives < cut).mean())
        if score > best_score:
            best, best_score = float(cut), score
    below = negatives[negatives < best]
    # Midway between the cut and the highest rejected score: less brittle than the exact sample value.
    return float((best + below.max()) / 2) if len(below) else best


def sample_candidates(groups: Sequence[str], hard: bool, k: int, seed: int) -> np.ndarray:
    """(N, 1 + k) row indexes: row i itself, then k distractor rows of the same (hard) or other (easy) groups.

    The reply-selection protocol of bench/chat.py: each true response ranked against k others of the held-out set.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(groups, dtype=object)
    rows = []
    for i in range(len(labels)):
        pool = np.flatnonzero((labels == labels[i]) if hard else (labels != labels[i]))
        pool = pool[pool != i]
        rows.append([i, *rng.choice(pool, size=k, replace=False).tolist()])
    return np.array(rows, dtype=np.int64)


def candidate_rows(passage_of: np.ndarray, query_groups: Sequence[str], passage_groups: Sequence[str],
                   size: int, seed: int = 0) -> np.ndarray:
    """(N, C) distinct passages per question: the true one first, then every passage when there are at most
    `size`, else up to a third from the question's own group (the hard ones) and the rest from other groups."""
    count = len(passage_groups)
    if count <= size:
        return np.array([[t, *[j for j in range(count) if j != t]] for t in passage_of], dtype=np.int64)
    rng = np.random.default_rng(seed)
    groups = np.asarray(passage_groups, dtype=object)
    rows = []
    for t, group in zip(passage_of, query_groups):
        same = np.flatnonzero((groups == group) & (np.arange(count) != t))
        same = rng.permutation(same)[: (size - 1) // 3]
        other = np.flatnonzero(groups != group)
        other = rng.choice(other, size=size - 1 - len(same), replace=False)
        rows.append([t, *same.tolist(), *other.tolist()])
    return np.array(rows, dtype=np.int64)


def distractor_positions(same_group: np.ndarray, hard: bool, k: int, seed: int) -> np.ndarray:
    """(M, 1 + k) positions into candidate rows (0 = the true passage), k same- or other-group distractors each;
    rows without k such distractors are left out."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, same in enumerate(same_group):
        pool = np.flatnonzero(same[1:] == hard) + 1
        if len(pool) >= k:
            rows.append([i, 0, *rng.choice(pool, size=k, replace=False).tolist()])
    return np.array(rows, dtype=np.int64).reshape(-1, k + 2)


# ------------------------------------------------------------------------------------------------ task


class RetrievalTask(Task):
    """Dual-encoder question -> passage retrieval with a validated lexical blend and a match threshold."""

    monitor = "mrr"

    def __init__(self, name: str = "retrieval", dim: int = 128, scale: float = 20.0, dropout: float = 0.1,
                 passage_max_len: int = 128, group_size: int = 8, blend: bool = True, pairs: str | None = None,
                 **_: Any):
        self.name = name
        self.pairs = pairs  # a dataset with responses (e.g. bitext); None = the FAQ
        self.dim = int(dim)
        self.scale = float(scale)  # softmax temperature on cosines: cosines live in [-1, 1]
        self.dropout = float(dropout)
        self.passage_max_len = int(passage_max_len)
        self.group_size = int(group_size)  # pairs per group in a batch (0 = random batches)
        self.blend = bool(blend)
        self.weights: list[float] = list(DEFAULT_WEIGHTS)
        self.similarity_threshold: float | None = None
        self.val_report: dict[str, float] = {}
        self.splits: dict[str, dict[str, Any]] = {}
        self._candidate: dict[str, Any] = {}  # blend and threshold chosen at the latest validation pass
        self._lexical_cache: dict[str, Any] = {}

    # --- data ---------------------------------------------------------------------------------------------------

    def load_data(self, cfg: DictConfig) -> dict[str, Any]:
        """`task.pairs` (a dataset with responses, e.g. bitext) or the FAQ questions -> their intent's answer."""
        if self.pairs:
            return self.dataset_pairs(str(self.pairs), cfg)
        from nlp_suite.tasks.reply import read_faq

        queries, passages, groups = [], [], []
        for entry in read_faq(cfg.data.faq):
            for question in entry["questions"]:
                queries.append(question)
                passages.append(entry["answer"])
                groups.append(entry["intent"])
        return self.split_pairs(Pairs(queries, passages, groups), cfg.train.val_fraction, cfg.seed)

    def split_pairs(self, pairs: Pairs, val_fraction: float, seed: int) -> dict[str, Pairs]:
        """Stratified (by group) train/val split of pairs."""
        index = list(range(len(pairs)))
        train, val, _, _ = stratified_split(index, pairs.groups, val_fraction, seed)
        pick = lambda rows: Pairs([pairs.queries[i] for i in rows], [pairs.passages[i] for i in rows],  # noqa: E731
                                  [pairs.groups[i] for i in rows])
        return {"train": pick(train), "val": pick(val)}

    def dataset_pairs(self, name: str, cfg: DictConfig) -> dict[str, Pairs]:
        """train/val/test request -> response pairs of a named dataset (`benchmark_splits`)."""
        from nlp_suite.data.datasets import benchmark_splits

        dataset = benchmark_splits(name, cfg.paths.shared_data, seed=cfg.seed, val_fraction=cfg.train.val_fraction)
        out = {}
        for split, part in dataset.splits.items():
            if part.responses is None:
                raise ValueError(f"dataset {name!r} has no responses; retrieval needs question -> answer pairs")
            out[split] = Pairs(part.texts, part.responses, part.labels)
        return out

    def corpus(self, data: dict[str, Any]) -> list[str]:
        train = data["train"]
        return list(train.queries) + list(dict.fromkeys(train.passages))

    def prepare(self, data: dict[str, Any], tokenizer: TextTokenizer, max_len: int) -> None:
        self.pad_id = tokenizer.pad_id
        self._lexical_cache = {}
        matcher_corpus = self.corpus(data)
        for split, pairs in data.items():
            group_of = dict(zip(pairs.passages, pairs.groups))
            distinct = list(group_of)
            where = {text: i for i, text in enumerate(distinct)}
            self.splits[split] = {
                "pairs": pairs, "passages": distinct,
                "passage_of": np.array([where[p] for p in pairs.passages], dtype=np.int64),
                "passage_groups": [group_of[p] for p in distinct],
                "query_ids": tokenizer.encode(list(pairs.queries), max_len),
                "passage_ids": tokenizer.encode(distinct, self.passage_max_len),
            }
        self.matcher = LexicalMatcher(matcher_corpus)

    def build_model(self, encoder: Encoder) -> nn.Module:
        return DualEncoder(encoder, self.dim, self.dropout)

    # --- batches and loss -------------------------------------------------------------------------------------

    def batch_indexes(self, split: str, batch_size: int, shuffle: bool,
                      generator: torch.Generator | None) -> list[list[int]]:
        """Random length-bucketed batches, or (group_size > 0, training) batches of a few groups each."""
        data = self.splits[split]
        groups = data["pairs"].groups
        if not (shuffle and self.group_size > 0 and len(set(groups)) > 1):
            lengths = [len(x) for x in data["query_ids"]]
            return bucketed_batches(lengths, batch_size, shuffle=shuffle, generator=generator)
        by_group: dict[str, list[int]] = {}
        for i in torch.randperm(len(groups), generator=generator).tolist():
            by_group.setdefault(groups[i], []).append(i)
        chunks = [rows[s:s + self.group_size] for rows in by_group.values()
                  for s in range(0, len(rows), self.group_size)]
        order = torch.randperm(len(chunks), generator=generator).tolist()
        per_batch = max(1, batch_size // self.group_size)
        return [sum((chunks[j] for j in order[s:s + per_batch]), []) for s in range(0, len(order), per_batch)]

    def batches(self, split: str, batch_size: int, shuffle: bool,
                generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        data = self.splits[split]
        for batch in self.batch_indexes(split, batch_size, shuffle, generator):
            passages = data["passage_of"][batch]
            distinct, target = np.unique(passages, return_inverse=True)  # shared answers count once
            q_ids, q_lengths = pad_batch([data["query_ids"][i] for i in batch], self.pad_id)
            p_ids, p_lengths = pad_batch([data["passage_ids"][j] for j in distinct], self.pad_id)
            yield {"query_ids": q_ids, "query_lengths": q_lengths, "passage_ids": p_ids,
                   "passage_lengths": p_lengths, "targets": torch.as_tensor(target.reshape(-1), dtype=torch.long)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q_vector, q_tokens, q_mask = model.represent(batch["query_ids"], batch["query_lengths"], "query")
        p_vector, p_tokens, p_mask = model.represent(batch["passage_ids"], batch["passage_lengths"], "passage")
        dense = self.scale * q_vector @ p_vector.T  # (B, P) logits
        inter = model.interaction(q_tokens, q_mask, p_tokens, p_mask)  # (B, P)
        return F.cross_entropy(dense, batch["targets"]) + F.cross_entropy(inter, batch["targets"])

    def tokens_in_batch(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["query_lengths"].sum() + batch["passage_lengths"].sum())

    # --- evaluation, blend and threshold ----------------------------------------------------------------------

    def _lexical(self, split: str) -> dict[str, Any]:
        """Candidates and lexical features of a split, computed once (they do not change while training)."""
        if split in self._lexical_cache:
            return self._lexical_cache[split]
        data = self.splits[split]
        pairs, passages = data["pairs"], data["passages"]
        candidates = candidate_rows(data["passage_of"], pairs.groups, data["passage_groups"], MAX_CANDIDATES)
        grams = [_TextGrams(p) for p in passages]
        found = {"candidates": candidates,
                 "lexical": self.matcher.features(pairs.queries, passages, candidates, grams)}
        groups = np.asarray(data["passage_groups"], dtype=object)
        found["same_group"] = groups[candidates] == np.asarray(pairs.groups, dtype=object)[:, None]  # (N, K)
        found["fit_rows"] = [distractor_positions(found["same_group"], hard, DISTRACTORS, 0) for hard in (True, False)]
        self._lexical_cache[split] = found
        return found

    def features(self, model: nn.Module, split: str) -> tuple[np.ndarray, dict[str, Any]]:
        """(N, K, F) dense + lexical features of a split's candidates."""
        data, lexical = self.splits[split], self._lexical(split)
        queries = encode(model, data["query_ids"], self.pad_id, "query")
        passages = encode(model, data["passage_ids"], self.pad_id, "passage")
        dense, inter = candidate_scores(model, queries, passages, lexical["candidates"])  # (N, K) each
        return np.concatenate([dense[:, :, None], inter[:, :, None], lexical["lexical"]], axis=2), lexical

    @staticmethod
    def pick(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """values[query, positions] for `distractor_positions` rows: (M, 1 + k, ...)."""
        return values[rows[:, :1], rows[:, 1:]]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        features, lexical = self.features(model, split)
        weights = np.asarray(self.weights)
        fit_rows = [rows for rows in lexical["fit_rows"] if len(rows)]
        if not self.blend:
            weights = np.eye(len(FEATURES))[0]  # dense cosine only
        elif split == "val" and fit_rows:  # the blend is chosen on validation, never on test
            weights = fit_blend(np.concatenate([self.pick(features, rows) for rows in fit_rows]))
        scores = features @ weights  # (N, K)
        metrics = {**rank_metrics(scores), **rank_metrics(features[:, :, 0], "dense_"),
                   **rank_metrics(features[:, :, 1], "interaction_")}
        for kind, rows in zip(("hard", "easy"), lexical["fit_rows"]):
            if len(rows):
                metrics[f"{kind}_recall@1"] = rank_metrics(self.pick(scores, rows))["recall@1"]
        if split == "val":  # kept by on_new_best when the loop keeps this epoch's weights
            self._candidate = {"weights": [float(w) for w in weights], "val": {k: round(v, 4) for k, v in metrics.items()},
                               "similarity_threshold": self.threshold(scores, lexical["same_group"])}
        return metrics

    def on_new_best(self) -> None:
        if self._candidate:
            self.weights = self._candidate["weights"]
            self.similarity_threshold = self._candidate["similarity_threshold"]
            self.val_report = self._candidate["val"]

    @staticmethod
    def threshold(scores: np.ndarray, same_group: np.ndarray) -> float:
        """Blended-score cut between matched questions and questions whose answers were left out."""
        correct = scores[:, 0] > scores[:, 1:].max(axis=1, initial=-np.inf)
        positives = scores[correct, 0]
        left_out = np.where(same_group, -np.inf, scores)  # drop the true passage and its group's passages
        negatives = left_out.max(axis=1)
        return choose_threshold(positives, negatives[np.isfinite(negatives)])

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights, "features": list(FEATURES), "similarity_threshold": self.similarity_threshold,
                "val": self.val_report}

    def load_state(self, state: dict[str, Any]) -> None:
        if list(state.get("features", FEATURES)) != list(FEATURES):
            raise ValueError(f"retrieval model features {state.get('features')} differ from this code's {FEATURES}")
        self.weights = [float(w) for w in state.get("weights", DEFAULT_WEIGHTS)]
        threshold = state.get("similarity_threshold")
        self.similarity_threshold = None if threshold is None else float(threshold)
        self.val_report = dict(state.get("val", {}))


# ------------------------------------------------------------------------------------------------ runtime


@dataclass
class Hit:
    """One retrieved passage: its index in the indexed list, blended score and dense cosine."""

    index: int
    score: float
    dense: float


class Retriever:
    """A loaded retrieval model over a fixed list of passages: `search(question)` -> best passages."""

    def __init__(self, model: DualEncoder, tokenizer: TextTokenizer, max_len: int, weights: Sequence[float],
                 threshold: float | None, passage_max_len: int = 128):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.passage_max_len = passage_max_len
        self.weights = np.asarray(weights, dtype=np.float64)
        self.threshold = threshold
        self.passages: list[str] = []

    @classmethod
    def from_loaded(cls, loaded) -> "Retriever":
        """From a `LoadedModel` of a retrieval checkpoint."""
        task: RetrievalTask = loaded.task
        return cls(loaded.model, loaded.tokenizer, loaded.max_len, task.weights, task.similarity_threshold,
                   task.passage_max_len)

    def index(self, passages: Sequence[str], corpus: Sequence[str] = (), fit_on_passages: bool = True) -> None:
        """Encode `passages` once; the lexical matcher is fitted on `corpus` (e.g. FAQ questions) plus, unless
        `fit_on_passages` is False (benchmarks: fit on training text only), the passages."""
        self.passages = list(passages)
        if not self.passages:
            return
        ids = self.tokenizer.encode(self.passages, self.passage_max_len)
        self.encoded = encode(self.model, ids, self.tokenizer.pad_id, "passage")
        self.matcher = LexicalMatcher([*(self.passages if fit_on_passages else []), *corpus])
        self.grams = [_TextGrams(p) for p in self.passages]
        self.passage_vectors = self.matcher.vectors(self.passages)  # once per index, not per question

    def features(self, queries: Sequence[str], candidates: np.ndarray) -> np.ndarray:
        """(N, C, F) features of each query against the indexed passages `candidates[i]`."""
        encoded = encode(self.model, self.tokenizer.encode(list(queries), self.max_len), self.tokenizer.pad_id,
                         "query")
        dense, inter = candidate_scores(self.model, encoded, self.encoded, candidates)
        lexical = self.matcher.features(queries, self.passages, candidates, self.grams, self.passage_vectors)
        return np.concatenate([dense[:, :, None], inter[:, :, None], lexical], axis=2)

    def score(self, queries: Sequence[str], candidates: np.ndarray) -> np.ndarray:
        """(N, C) blended scores (what `threshold` applies to)."""
        return self.features(queries, candidates) @ self.weights

    def search(self, query: str, k: int = 1) -> list[Hit]:
        """The k best passages by blended score, plus any tied with the k-th (empty when nothing is indexed).

        Ties are kept rather than cut at random: a re-ranker after the search (the chat service's intent prior)
        must see every passage that scored as well as the last one it was given.
        """
        if not self.passages:
            return []
        features = self.features([query], np.arange(len(self.passages))[None, :])[0]  # (P, F)
        blended = features @ self.weights
        order = np.argsort(-blended, kind="stable")  # (P,) best first; equal scores keep passage order
        if 0 < k < len(order):
            cut = blended[order[k - 1]]
            k += int(np.sum(np.abs(blended[order[k:]] - cut) <= TIE_TOLERANCE))
        return [Hit(int(i), float(blended[i]), float(features[i, 0])) for i in order[:k]]
