"""Shared machinery of text-classification tasks (sentiment, intent): labels, batches, loss, metrics, predict."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from omegaconf import DictConfig
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

from nlp_suite.models.encoder import Encoder
from nlp_suite.models.ensemble import ensemble_members, mean_probabilities
from nlp_suite.models.heads import EncoderWithHead, PoolingClassifierHead
from nlp_suite.tasks.base import Task
from nlp_suite.text.batching import bucketed_batches, pad_batch
from nlp_suite.text.tokenizer import TextTokenizer
from nlp_suite.training.distill import UNLABELLED, distillation_loss


def stratified_split(texts: list[str], labels: list[str], val_fraction: float, seed: int):
    """Train/validation split that keeps label proportions; falls back to random when a class is tiny."""
    counts = {label: labels.count(label) for label in set(labels)}
    stratify = labels if min(counts.values()) >= 2 else None
    return train_test_split(texts, labels, test_size=val_fraction, random_state=seed, stratify=stratify)


class TextClassificationTask(Task):
    """Single-label classification of a text with a concat-pooling head."""

    monitor = "macro_f1"
    supports_ensemble = True

    def __init__(self, name: str, labels: list[str] | None = None, head_hidden: int = 64, head_dropout: float = 0.2,
                 pooling: str = "concat", **_: Any):
        self.name = name
        self.pooling = pooling  # concat | attention | concat_attention (attention explains predictions)
        self.labels = list(labels) if labels else []  # fixed order from config, or learned from data
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout
        self.splits: dict[str, dict[str, Any]] = {}
        self.distillation: tuple[float, float, str] | None = None  # (alpha, temperature, loss) with soft targets
        self.hint: tuple[float, int] | None = None  # (weight, width) of the teacher-embedding targets (distill.py)

    def labelled_data(self, texts: list[str], labels: list[str], val_fraction: float, seed: int) -> dict[str, Any]:
        """Check labels against the label set and split."""
        if not self.labels:
            self.labels = sorted(set(labels))
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise ValueError(f"task {self.name!r}: labels {unknown} are not in the configured labels {self.labels}")
        train_texts, val_texts, train_labels, val_labels = stratified_split(texts, labels, val_fraction, seed)
        return {"train": (train_texts, train_labels), "val": (val_texts, val_labels)}

    def dataset_data(self, name: str, cfg: DictConfig) -> dict[str, Any]:
        """train/val/test of a named real dataset (nlp_suite.data.datasets) from paths.shared_data."""
        from nlp_suite.data.datasets import benchmark_splits

        dataset = benchmark_splits(name, cfg.paths.shared_data, seed=cfg.seed, val_fraction=cfg.train.val_fraction)
        if not self.labels:
            self.labels = list(dataset.labels)
        return {split: (part.texts, part.labels) for split, part in dataset.splits.items()}

    def corpus(self, data: dict[str, Any]) -> list[str]:
        return list(data["train"][0])

    def prepare(self, data: dict[str, Any], tokenizer: TextTokenizer, max_len: int) -> None:
        index = {label: i for i, label in enumerate(self.labels)}
        self.pad_id = tokenizer.pad_id
        for split, (texts, labels, *teacher) in data.items():  # teacher: (N, C) log-probs [, (N, k) hint targets]
            ids = tokenizer.encode(list(texts), max_len)
            targets = [UNLABELLED if label is None else index[label] for label in labels]
            self.splits[split] = {"ids": ids, "lengths": [len(x) for x in ids],
                                  "targets": torch.tensor(targets, dtype=torch.long)}
            for key, values in zip(("soft", "hint"), teacher):
                self.splits[split][key] = torch.as_tensor(np.asarray(values), dtype=torch.float32)

    def build_model(self, encoder: Encoder) -> nn.Module:
        head = PoolingClassifierHead(encoder, len(self.labels), self.head_hidden, self.head_dropout, self.pooling)
        model = EncoderWithHead(encoder, head)
        if self.hint:  # training-only map from the pooled sentence vector to the teacher's embedding components
            model.auxiliary["hint"] = nn.Linear(head.pool.output_dim(encoder.output_dim), self.hint[1])
        return model

    def batches(self, split: str, batch_size: int, shuffle: bool,
                generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        data = self.splits[split]
        for batch in bucketed_batches(data["lengths"], batch_size, shuffle=shuffle, generator=generator):
            ids, lengths = pad_batch([data["ids"][i] for i in batch], self.pad_id)
            out = {"ids": ids, "lengths": lengths, "targets": data["targets"][batch], "index": torch.tensor(batch)}
            for key in ("soft", "hint"):
                if key in data:
                    out[key] = data[key][batch]
            yield out

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "hint" in batch and self.hint and "hint" in model.auxiliary:
            states, mask = model.encoder(batch["ids"], batch["lengths"])  # (B, T, H), (B, T)
            pooled = model.head.pool(states, mask)  # (B, P)
            logits = model.head.layers(pooled)  # (B, C)
            hint = F.mse_loss(model.auxiliary["hint"](pooled).float(), batch["hint"])  # mean over rows and components
            return distillation_loss(logits, batch["targets"], batch["soft"], *self.distillation) + self.hint[0] * hint
        logits = model(batch["ids"], batch["lengths"])  # (B, C)
        if "soft" in batch and self.distillation:
            return distillation_loss(logits, batch["targets"], batch["soft"], *self.distillation)
        return F.cross_entropy(logits, batch["targets"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        model.eval()
        device = next(model.parameters()).device
        truth, predicted = [], []
        for batch in self.batches(split, 256, shuffle=False):
            logits = model(batch["ids"].to(device), batch["lengths"].to(device))
            predicted.append(logits.argmax(dim=1).cpu())
            truth.append(batch["targets"])
        metrics = classification_metrics(torch.cat(truth).numpy(), torch.cat(predicted).numpy())
        if split == "val" and "agreement" in self.splits:  # distill.select_on=teacher_agreement (distill.py)
            metrics["teacher_agreement"] = self.evaluate(model, "agreement")["accuracy"]
        return metrics

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = list(state["labels"])


def classification_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (sklearn)."""
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0))}


class TextClassifier:
    """A loaded classifier: texts in, class probabilities out (batched, length-sorted, no grad)."""

    def __init__(self, model: nn.Module, tokenizer: TextTokenizer, labels: list[str], max_len: int,
                 batch_size: int = 256):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_len = max_len
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(N, C) probabilities in `self.labels` order."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        ids = self.tokenizer.encode(list(texts), self.max_len)
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        lengths = [len(x) for x in ids]
        for batch in bucketed_batches(lengths, self.batch_size, shuffle=False):
            padded, batch_lengths = pad_batch([ids[i] for i in batch], self.tokenizer.pad_id)
            logits = self.model(padded.to(self.device), batch_lengths.to(self.device))
            out[batch] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return out

    @torch.no_grad()
    def predict_with_features(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) probabilities and the (N, P) pooled sentence vectors the head classifies (an ensemble's members'
        vectors side by side)."""
        members = ensemble_members(self.model)
        ids = self.tokenizer.encode(list(texts), self.max_len)
        probabilities = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        width = sum(m.head.pool.output_dim(m.encoder.output_dim) for m in members)
        pooled_out = np.zeros((len(ids), width), dtype=np.float32)
        for batch in bucketed_batches([len(x) for x in ids], self.batch_size, shuffle=False):
            padded, lengths = pad_batch([ids[i] for i in batch], self.tokenizer.pad_id)
            pooled_parts, member_logits = [], []
            for member in members:
                states, mask = member.encoder(padded.to(self.device), lengths.to(self.device))  # (B, T, H)
                pooled = member.head.pool(states, mask)  # (B, P)
                member_logits.append(member.head.layers(pooled))  # (B, C)
                pooled_parts.append(pooled.float())
            probabilities[batch] = mean_probabilities(member_logits).cpu().numpy()
            pooled_out[batch] = torch.cat(pooled_parts, dim=1).cpu().numpy()
        return probabilities, pooled_out

    @torch.no_grad()
    def explain(self, text: str) -> list[tuple[str, float]]:
        """(token, attention weight) for one text (averaged over an ensemble's members); empty when the head has no
        attention pooling."""
        pools = [getattr(getattr(m, "head", None), "pool", None) for m in ensemble_members(self.model)]
        if not all(hasattr(pool, "last_weights") for pool in pools):  # concat pooling has no per-token weights
            return []
        ids = self.tokenizer.encode([text], self.max_len)
        padded, lengths = pad_batch(ids, self.tokenizer.pad_id)
        self.model(padded.to(self.device), lengths.to(self.device))
        weights = torch.stack([pool.last_weights[0, : len(ids[0])].float() for pool in pools]).mean(dim=0)
        tokens = self.tokenizer.tokenizer.id_to_token
        return [(tokens(i), w) for i, w in zip(ids[0], weights.cpu().tolist())]

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(label, probability) of the top class per text."""
        probabilities = self.predict_proba(texts)
        return [(self.labels[int(row.argmax())], float(row.max())) for row in probabilities]
