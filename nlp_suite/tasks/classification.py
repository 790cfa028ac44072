"""Shared machinery of text-classification tasks (sentiment, intent): labels, batches, loss, metrics, predict."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

from nlp_suite.models.encoder import Encoder
from nlp_suite.models.heads import EncoderWithHead, PoolingClassifierHead
from nlp_suite.tasks.base import Task
from nlp_suite.text.batching import bucketed_batches, pad_batch
from nlp_suite.text.tokenizer import TextTokenizer


def stratified_split(texts: list[str], labels: list[str], val_fraction: float, seed: int):
    """Train/validation split that keeps label proportions; falls back to random when a class is tiny."""
    counts = {label: labels.count(label) for label in set(labels)}
    stratify = labels if min(counts.values()) >= 2 else None
    return train_test_split(texts, labels, test_size=val_fraction, random_state=seed, stratify=stratify)


class TextClassificationTask(Task):
    """Single-label classification of a text with a concat-pooling head."""

    monitor = "macro_f1"

    def __init__(self, name: str, labels: list[str] | None = None, head_hidden: int = 64, head_dropout: float = 0.2,
                 **_: Any):
        self.name = name
        self.labels = list(labels) if labels else []  # fixed order from config, or learned from data
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout
        self.splits: dict[str, dict[str, Any]] = {}

    def labelled_data(self, texts: list[str], labels: list[str], val_fraction: float, seed: int) -> dict[str, Any]:
        """Check labels against the label set and split."""
        if not self.labels:
            self.labels = sorted(set(labels))
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise ValueError(f"task {self.name!r}: labels {unknown} are not in the configured labels {self.labels}")
        train_texts, val_texts, train_labels, val_labels = stratified_split(texts, labels, val_fraction, seed)
        return {"train": (train_texts, train_labels), "val": (val_texts, val_labels)}

    def corpus(self, data: dict[str, Any]) -> list[str]:
        return list(data["train"][0])

    def prepare(self, data: dict[str, Any], tokenizer: TextTokenizer, max_len: int) -> None:
        index = {label: i for i, label in enumerate(self.labels)}
        self.pad_id = tokenizer.pad_id
        for split, (texts, labels) in data.items():
            ids = tokenizer.encode(list(texts), max_len)
            self.splits[split] = {"ids": ids, "lengths": [len(x) for x in ids],
                                  "targets": torch.tensor([index[label] for label in labels], dtype=torch.long)}

    def build_model(self, encoder: Encoder) -> nn.Module:
        head = PoolingClassifierHead(encoder, len(self.labels), self.head_hidden, self.head_dropout)
        return EncoderWithHead(encoder, head)

    def batches(self, split: str, batch_size: int, shuffle: bool,
                generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        data = self.splits[split]
        for batch in bucketed_batches(data["lengths"], batch_size, shuffle=shuffle, generator=generator):
            ids, lengths = pad_batch([data["ids"][i] for i in batch], self.pad_id)
            yield {"ids": ids, "lengths": lengths, "targets": data["targets"][batch], "index": torch.tensor(batch)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(model(batch["ids"], batch["lengths"]), batch["targets"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        model.eval()
        device = next(model.parameters()).device
        truth, predicted = [], []
        for batch in self.batches(split, 256, shuffle=False):
            logits = model(batch["ids"].to(device), batch["lengths"].to(device))
            predicted.append(logits.argmax(dim=1).cpu())
            truth.append(batch["targets"])
        return classification_metrics(torch.cat(truth).numpy(), torch.cat(predicted).numpy())

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

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(label, probability) of the top class per text."""
        probabilities = self.predict_proba(texts)
        return [(self.labels[int(row.argmax())], float(row.max())) for row in probabilities]
