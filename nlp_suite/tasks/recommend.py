"""Text recommendation with two towers on the shared encoder (LSTUR/NRMS style, without a user-id embedding).

* Item tower: the shared Encoder over the item text (title, tags, description; cut to max_len) -> concat
  pooling -> Linear -> item vector of width `user_dim`. An item nobody interacted with still gets a vector
  from its text alone (cold-start items).
* User tower: a GRU over the vectors of the user's last `history` positive items in time order, started from
  a learned "no history yet" vector, so a user with no history gets a vector too (cold-start users). There
  is deliberately no per-user embedding: every user, new or old, is described by what they picked.
* Score: dot product of user and item vectors.

Two optional additions (off by default, on for MovieLens in `bench/recommend.py`):

* `id_embedding`: an item-id embedding added to the text vector of warm items (items with a training positive).
  During training the id part is dropped per item with probability `id_dropout`, so the text path alone stays a
  good item vector: cold items (no id row, or an id the model never saw) are scored from text only.
* `long_term`: the user tower adds a projection of the mean of all history vectors it is given (long-term taste)
  to the GRU state (short-term, order-aware); with a longer `history` it sees more of the user.

Training examples are (previous positives -> next positive) per user; the loss is softmax cross-entropy over
[target + `negatives` sampled items], never sampling the user's own positives. Only the distinct items of a
batch are encoded, so a step costs the same with 200 or 10,000 items. The last positive of each user with at
least `min_val_positives` positives is held out (split by time); validation ranks every item except the
user's earlier positives and reports ndcg@10, hit@10, MRR and AUC (`recommend_metrics`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Iterator

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from nlp_suite.data.catalog import (MIN_RATING, POSITIVE_EVENTS, item_text, positive_sequences, read_interactions,
                                    read_items)
from nlp_suite.models.encoder import Encoder
from nlp_suite.models.pooling import ConcatPooling
from nlp_suite.paths import resolve
from nlp_suite.tasks.base import Task
from nlp_suite.tasks.recommend_metrics import metrics_from_ranks, target_ranks
from nlp_suite.text.batching import bucketed_batches, pad_batch
from nlp_suite.text.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

EVAL_K = 10
Example = tuple[int, tuple[int, ...], int]  # (user index, history item indexes oldest first, target item index)


class ItemTower(nn.Module):
    """(B, T, H) encoder states + mask -> (B, D) item vectors: concat pooling, [Linear-ReLU], Linear."""

    def __init__(self, encoder: Encoder, user_dim: int, head_hidden: int = 0, dropout: float = 0.1):
        super().__init__()
        self.pool = ConcatPooling(encoder.config.hidden_dim, encoder.config.bidirectional)
        width = self.pool.output_dim(encoder.output_dim)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if head_hidden:
            layers += [nn.Linear(width, head_hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = head_hidden
        layers.append(nn.Linear(width, user_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.layers(self.pool(states, mask))


class UserTower(nn.Module):
    """(U, L, D) history item vectors (oldest first, right-padded) + (U,) lengths (may be 0) -> (U, D)."""

    def __init__(self, dim: int, long_term: bool = False):
        super().__init__()
        self.start = nn.Parameter(torch.randn(dim) * 0.1)  # the state of a user with no history yet
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, dim)
        self.long = nn.Linear(dim, dim) if long_term else None  # mean of the whole given history

    def forward(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        users = history.size(0)
        start = self.start.to(history.dtype).expand(users, 1, -1)
        sequence = torch.cat([start, history], dim=1)  # (U, 1 + L, D)
        packed = pack_padded_sequence(sequence, (lengths + 1).cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # (1, U, D): state after each user's last real step
        user = self.out(last[-1])
        if self.long is not None and history.size(1):
            steps = torch.arange(history.size(1), device=history.device)[None, :] < lengths[:, None]  # (U, L)
            total = (history * steps[..., None].to(history.dtype)).sum(dim=1)  # (U, D)
            user = user + self.long(total / lengths.clamp(min=1)[:, None].to(history.dtype))
        return user


class TwoTowerModel(nn.Module):
    """Shared encoder + item tower + user tower; `forward(ids, lengths)` gives item vectors."""

    def __init__(self, encoder: Encoder, user_dim: int, head_hidden: int = 0, dropout: float = 0.1,
                 id_items: int = 0, id_dropout: float = 0.0, long_term: bool = False):
        super().__init__()
        self.encoder = encoder  # named `encoder` so the loop gives it its own learning-rate group
        self.item_tower = ItemTower(encoder, user_dim, head_hidden, dropout)
        self.user_tower = UserTower(user_dim, long_term)
        self.dim = user_dim
        self.id_dropout = id_dropout
        self.id_vectors: nn.Embedding | None = None
        if id_items:  # row `id_items` is the all-zero "no id" row (cold items)
            self.id_vectors = nn.Embedding(id_items + 1, user_dim, padding_idx=id_items)
            nn.init.normal_(self.id_vectors.weight, std=0.01)
            with torch.no_grad():
                self.id_vectors.weight[id_items].zero_()

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, item_index: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(N, D) item vectors from tokens; `item_index` (N,) id rows (-1 = none) adds the id part when present."""
        states, mask = self.encoder(ids, lengths)
        vectors = self.item_tower(states, mask)  # (N, D)
        if self.id_vectors is None or item_index is None:
            return vectors  # text only: cold items, or a model without id embeddings
        none = self.id_vectors.padding_idx
        rows = torch.where(item_index < 0, torch.full_like(item_index, none), item_index)
        if self.training and self.id_dropout > 0:  # so the text path alone has to describe the item
            dropped = torch.rand(rows.shape, device=rows.device) < self.id_dropout
            rows = torch.where(dropped, torch.full_like(rows, none), rows)
        return vectors + self.id_vectors(rows).to(vectors.dtype)

    def users(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """User vectors from history item vectors."""
        return self.user_tower(history, lengths)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_token_ids(model: TwoTowerModel, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int = 256,
                     item_index: torch.Tensor | None = None) -> torch.Tensor:
    """(N, D) float32 item vectors of tokenized texts on the model's device (eval mode, length-bucketed).

    `item_index`: optional (N,) id-embedding rows of the items (-1 = cold: text only); None = text only.
    """
    model.eval()
    device = _device(model)
    out = torch.zeros(len(ids), model.dim, device=device)
    lengths = [len(x) for x in ids]
    for batch in bucketed_batches(lengths, batch_size, shuffle=False):
        padded, batch_lengths = pad_batch([ids[i] for i in batch], pad_id)
        rows = None if item_index is None else item_index[torch.tensor(batch)].to(device)
        out[torch.tensor(batch, device=device)] = model(padded.to(device), batch_lengths.to(device), rows).float()
    return out


def encode_items(model: TwoTowerModel, tokenizer: TextTokenizer, texts: Sequence[str], max_len: int,
                 batch_size: int = 256, item_index: torch.Tensor | None = None) -> torch.Tensor:
    """(N, D) item vectors from item texts (works for items nobody interacted with), on the model's device;
    `item_index` (N,) adds the id part of warm items (`RecommendTask.id_rows`), -1 or None = text only."""
    if not texts:
        return torch.zeros(0, model.dim, device=_device(model))
    return encode_token_ids(model, tokenizer.encode(list(texts), max_len), tokenizer.pad_id, batch_size, item_index)


@torch.no_grad()
def encode_users(model: TwoTowerModel, histories: Sequence[torch.Tensor], batch_size: int = 1024) -> torch.Tensor:
    """(U, D) user vectors from each user's (L_i, D) history item vectors, oldest first; L_i may be 0."""
    model.eval()
    device = _device(model)
    out = torch.zeros(len(histories), model.dim, device=device)
    for start in range(0, len(histories), batch_size):
        chunk = [h.to(device=device, dtype=torch.float32).reshape(-1, model.dim)
                 for h in histories[start:start + batch_size]]
        lengths = torch.tensor([len(h) for h in chunk], dtype=torch.long)
        if int(lengths.max()) == 0:
            padded = torch.zeros(len(chunk), 0, model.dim, device=device)
        else:
            padded = pad_sequence(chunk, batch_first=True)
        out[start:start + len(chunk)] = model.users(padded, lengths.to(device)).float()
    return out


class RecommendTask(Task):
    """Next-positive-item prediction with a text item tower and a GRU user tower."""

    monitor = "ndcg@10"

    def __init__(self, name: str = "recommend", negatives: int = 4, user_dim: int = 64, history: int = 10,
                 head_hidden: int = 0, dropout: float = 0.1, positive_events: Sequence[str] = POSITIVE_EVENTS,
                 min_rating: float = MIN_RATING, min_val_positives: int = 3, id_embedding: bool = False,
                 id_dropout: float = 0.5, long_term: bool = False, **_: Any):
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1, got {negatives}")
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.name = name
        self.negatives = int(negatives)
        self.user_dim = int(user_dim)
        self.history = int(history)
        self.head_hidden = int(head_hidden)
        self.dropout = float(dropout)
        self.positive_events = tuple(positive_events)
        self.min_rating = float(min_rating)
        self.min_val_positives = int(min_val_positives)
        self.id_embedding = bool(id_embedding)
        self.id_dropout = float(id_dropout)
        self.long_term = bool(long_term)
        self.id_item_ids: list[str] = []  # external ids of the id-embedding rows (the warm items at training time)
        self.histories: list[list[int]] = []  # per user: training positives in time order
        self._rows: torch.Tensor | None = None  # id rows of the prepared items (cache of `id_rows`)
        self.item_ids: list[str] = []
        self.item_texts: list[str] = []
        self.item_tokens: list[list[int]] = []
        self.pad_id = 0
        self.splits: dict[str, list[Example]] = {}
        self.positives: list[set[int]] = []  # per user: every positive item (never sampled as a negative)
        self.seen: list[set[int]] = []  # per user: training-period positives (excluded when ranking val)

    # --- data ---------------------------------------------------------------------------------------------------

    def load_data(self, cfg: DictConfig) -> dict[str, Any]:
        # Item access: `cfg.data.items` would be DictConfig.items, the method.
        items_path, interactions_path = resolve(cfg.data["items"]), resolve(cfg.data["interactions"])
        items, item_errors = read_items(items_path)
        interactions, errors = read_interactions(interactions_path, known_items=set(items["external_id"]))
        for error in (item_errors + errors)[:10]:
            log.warning("skipped %s", error)
        if item_errors or errors:
            log.warning("%s: skipped %d bad item rows and %d bad interaction rows", self.name, len(item_errors),
                        len(errors))
        return self.split_sequences(items, interactions)

    def split_sequences(self, items, interactions) -> dict[str, Any]:
        """Time-ordered positive sequences per user -> train examples and one held-out val example per user."""
        if items.empty:
            raise ValueError(f"task {self.name!r}: the items file has no valid rows")
        item_ids = items["external_id"].tolist()
        texts = [item_text(t, g, d) for t, g, d in zip(items["title"], items["tags"], items["description"])]
        index = {item: i for i, item in enumerate(item_ids)}
        sequences = positive_sequences(interactions, self.positive_events, self.min_rating)
        train: list[Example] = []
        val: list[Example] = []
        positives: list[set[int]] = []
        seen: list[set[int]] = []
        users: list[str] = []
        for user, sequence in sequences.items():
            u = len(users)
            users.append(str(user))
            order = [index[item] for item in sequence]
            fit_part = order[:-1] if len(order) >= self.min_val_positives else order
            if len(order) >= self.min_val_positives:
                val.append((u, tuple(fit_part[-self.history:]), order[-1]))
            for t, target in enumerate(fit_part):
                train.append((u, tuple(fit_part[max(0, t - self.history):t]), target))
            positives.append(set(order))
            seen.append(set(fit_part))
        if not val:
            raise ValueError(f"task {self.name!r}: no user has >= {self.min_val_positives} positive interactions "
                             f"(events {list(self.positive_events)} or rating >= {self.min_rating}); "
                             "cannot hold out a validation item")
        log.info("%s: %d items, %d users, %d train / %d val examples", self.name, len(item_ids), len(users),
                 len(train), len(val))
        return {"train": train, "val": val, "item_ids": item_ids, "item_texts": texts, "users": users,
                "positives": positives, "seen": seen}

    def corpus(self, data: dict[str, Any]) -> list[str]:
        return list(data["item_texts"])

    def prepare(self, data: dict[str, Any], tokenizer: TextTokenizer, max_len: int) -> None:
        self.item_ids, self.item_texts = list(data["item_ids"]), list(data["item_texts"])
        self.item_tokens = tokenizer.encode(self.item_texts, max_len)
        self.pad_id = tokenizer.pad_id
        self.splits = {"train": list(data["train"]), "val": list(data["val"])}
        self.positives, self.seen = list(data["positives"]), list(data["seen"])
        self.histories = [[] for _ in self.positives]  # per user: training positives in time order
        for user, past, target in self.splits["train"]:
            self.histories[user].append(target)
        warm = sorted({target for _, _, target in self.splits["train"]})  # items with a training positive
        self.id_item_ids = [self.item_ids[i] for i in warm] if self.id_embedding else []

    def build_model(self, encoder: Encoder) -> nn.Module:
        return TwoTowerModel(encoder, self.user_dim, self.head_hidden, self.dropout, len(self.id_item_ids),
                             self.id_dropout, self.long_term)

    def id_rows(self, external_ids: Sequence[str]) -> torch.Tensor:
        """(N,) id-embedding row of each item (-1 for items the model has no id for, or no id embedding)."""
        rows = {item: i for i, item in enumerate(self.id_item_ids)}
        return torch.tensor([rows.get(str(item), -1) for item in external_ids], dtype=torch.long)

    def warm_index(self) -> torch.Tensor | None:
        """id rows of the prepared items (None without id embeddings)."""
        return self.id_rows(self.item_ids) if self.id_item_ids else None

    def recent_history(self, user: int) -> list[int]:
        """The user's last `history` training positives (item indexes, oldest first)."""
        return list(self.histories[user][-self.history:])

    # --- batches and loss -------------------------------------------------------------------------------------

    def sample_negatives(self, users: Sequence[int], generator: torch.Generator | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, negatives) item indexes drawn uniformly, never one of the user's positives, and a validity mask
        (False only where a user's positives cover the whole catalog)."""
        count = len(self.item_ids)
        drawn = torch.randint(count, (len(users), self.negatives), generator=generator)
        valid = torch.ones(len(users), self.negatives, dtype=torch.bool)
        for row, user in enumerate(users):
            positives = self.positives[user]
            values = drawn[row].tolist()
            bad = [j for j, item in enumerate(values) if item in positives]
            for _ in range(32):  # rejection sampling: cheap while positives are a small part of the catalog
                if not bad:
                    break
                for j, item in zip(bad, torch.randint(count, (len(bad),), generator=generator).tolist()):
                    values[j] = item
                bad = [j for j in bad if values[j] in positives]
            if bad:
                allowed = [i for i in range(count) if i not in positives]
                for j in bad:
                    if allowed:
                        values[j] = allowed[int(torch.randint(len(allowed), (1,), generator=generator))]
                    else:
                        values[j], valid[row, j] = 0, False
            drawn[row] = torch.tensor(values)
        return drawn, valid

    def collate(self, examples: Sequence[Example], generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """Tensors of a batch; items are encoded once per batch, referenced by local index."""
        local: dict[int, int] = {}

        def at(item: int) -> int:
            return local.setdefault(item, len(local))

        negatives, valid = self.sample_negatives([u for u, _, _ in examples], generator)
        longest = max(len(h) for _, h, _ in examples)
        history = torch.zeros(len(examples), longest, dtype=torch.long)
        history_lengths = torch.tensor([len(h) for _, h, _ in examples], dtype=torch.long)
        candidates = torch.zeros(len(examples), 1 + self.negatives, dtype=torch.long)
        for row, (_, past, target) in enumerate(examples):
            candidates[row, 0] = at(target)
            candidates[row, 1:] = torch.tensor([at(i) for i in negatives[row].tolist()])
            if past:
                history[row, : len(past)] = torch.tensor([at(i) for i in past])
        item_ids, item_lengths = pad_batch([self.item_tokens[i] for i in local], self.pad_id)
        candidate_mask = torch.cat([torch.ones(len(examples), 1, dtype=torch.bool), valid], dim=1)
        batch = {"item_ids": item_ids, "item_lengths": item_lengths, "history": history,
                 "history_lengths": history_lengths, "candidates": candidates, "candidate_mask": candidate_mask}
        if self.id_item_ids:
            batch["item_index"] = self._warm_rows()[torch.tensor(list(local), dtype=torch.long)]
        return batch

    def _warm_rows(self) -> torch.Tensor:
        """(N,) id rows of all prepared items, computed once."""
        if self._rows is None or len(self._rows) != len(self.item_ids):
            self._rows = self.id_rows(self.item_ids)
        return self._rows

    def batches(self, split: str, batch_size: int, shuffle: bool,
                generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        examples = self.splits[split]
        order = torch.randperm(len(examples), generator=generator).tolist() if shuffle else range(len(examples))
        order = list(order)
        for start in range(0, len(order), batch_size):
            yield self.collate([examples[i] for i in order[start:start + batch_size]], generator)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        vectors = model(batch["item_ids"], batch["item_lengths"], batch.get("item_index"))  # (N, D): distinct items
        users = model.users(vectors[batch["history"]], batch["history_lengths"])  # (B, D)
        candidates = vectors[batch["candidates"]]  # (B, 1 + K, D); column 0 is the target
        logits = (users[:, None, :] * candidates).sum(dim=-1).float()
        logits = logits.masked_fill(~batch["candidate_mask"], float("-inf"))
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))

    def tokens_in_batch(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["item_lengths"].sum())

    # --- evaluation and inference -----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """ndcg@10, hit@10, MRR, AUC of the held-out item ranked against all items but the user's history."""
        examples = self.splits[split]
        vectors = encode_token_ids(model, self.item_tokens, self.pad_id, item_index=self.warm_index())  # (N, D)
        ranks, counts = [], []
        for start in range(0, len(examples), 512):
            chunk = examples[start:start + 512]
            users = encode_users(model, [vectors[list(h)] for _, h, _ in chunk])
            scores = users @ vectors.T  # (U, N)
            exclude = torch.zeros_like(scores, dtype=torch.bool)
            for row, (user, _, _) in enumerate(chunk):
                seen = self.seen[user] if user < len(self.seen) else set()
                if seen:
                    exclude[row, list(seen)] = True
            targets = torch.tensor([t for _, _, t in chunk], device=scores.device)
            rank, count = target_ranks(scores, targets, exclude)
            ranks.append(rank.cpu())
            counts.append(count.cpu())
        if not ranks:
            return metrics_from_ranks(torch.zeros(0), torch.zeros(0), EVAL_K)
        return metrics_from_ranks(torch.cat(ranks), torch.cat(counts), EVAL_K)

    def encode_items(self, model: nn.Module, tokenizer: TextTokenizer, texts: Sequence[str], max_len: int
                     ) -> torch.Tensor:
        """(N, D) item vectors from texts (see module-level `encode_items`)."""
        return encode_items(model, tokenizer, texts, max_len)

    def encode_users(self, model: nn.Module, histories: Sequence[torch.Tensor]) -> torch.Tensor:
        """(U, D) user vectors from (L_i, D) history item vectors (see module-level `encode_users`)."""
        return encode_users(model, histories)

    # --- checkpoint state ---------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Dims and settings needed to rebuild and use the model; item texts stay in SQL, not here."""
        return {"user_dim": self.user_dim, "head_hidden": self.head_hidden, "dropout": self.dropout,
                "history": self.history, "negatives": self.negatives,
                "positive_events": list(self.positive_events), "min_rating": self.min_rating,
                "trained_items": len(self.item_ids), "id_embedding": self.id_embedding,
                "id_dropout": self.id_dropout, "long_term": self.long_term, "id_item_ids": list(self.id_item_ids)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.user_dim = int(state.get("user_dim", self.user_dim))
        self.head_hidden = int(state.get("head_hidden", self.head_hidden))
        self.dropout = float(state.get("dropout", self.dropout))
        self.history = int(state.get("history", self.history))
        self.negatives = int(state.get("negatives", self.negatives))
        self.positive_events = tuple(state.get("positive_events", self.positive_events))
        self.min_rating = float(state.get("min_rating", self.min_rating))
        self.id_embedding = bool(state.get("id_embedding", False))  # models saved before these options had none
        self.id_dropout = float(state.get("id_dropout", self.id_dropout))
        self.long_term = bool(state.get("long_term", False))
        self.id_item_ids = [str(item) for item in state.get("id_item_ids", [])]
