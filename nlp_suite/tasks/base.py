"""What every task provides to the generic training loop, registry and predictors."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from nlp_suite.models.encoder import Encoder
from nlp_suite.text.tokenizer import TextTokenizer


class Task(ABC):
    """A task: its data, its head on the shared encoder, its loss and metrics."""

    name: str
    monitor: str  # validation metric used for early stopping and the promotion gate (higher is better)
    select_on: str | None = None  # another validation metric for early stopping only (e.g. teacher_agreement)
    supports_ensemble: bool = False  # its model maps (ids, lengths) to (B, C) class logits (train.ensemble > 1)

    @abstractmethod
    def load_data(self, cfg: DictConfig) -> dict[str, Any]:
        """Read the configured data and split it into {'train': ..., 'val': ...}."""

    @abstractmethod
    def corpus(self, data: dict[str, Any]) -> list[str]:
        """Unlabelled texts to train the tokenizer on."""

    @abstractmethod
    def prepare(self, data: dict[str, Any], tokenizer: TextTokenizer, max_len: int) -> None:
        """Tokenize once, so epochs only shuffle ids; also fixes label maps."""

    @abstractmethod
    def build_model(self, encoder: Encoder) -> nn.Module:
        """The encoder with this task's head."""

    @abstractmethod
    def batches(self, split: str, batch_size: int, shuffle: bool,
                generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Tensor batches of a prepared split."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss of one batch."""

    @abstractmethod
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics on a prepared split; includes `self.monitor`."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-serialisable task state (e.g. labels) needed to rebuild the model at load time."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state()` returned."""

    @property
    def selection_metric(self) -> str:
        """The validation metric that picks the kept epoch and stops training early (`monitor` unless a task
        says otherwise); the promotion gate always compares `monitor`."""
        return self.select_on or self.monitor

    def on_new_best(self) -> None:
        """Called by the training loop right after a validation evaluation that became the best epoch (the weights
        it keeps): tasks that choose something on validation (e.g. thresholds) commit that epoch's choice here."""

    def tokens_in_batch(self, batch: dict[str, torch.Tensor]) -> int:
        """Real (non-pad) tokens in a batch, for throughput figures."""
        return int(batch["lengths"].sum()) if "lengths" in batch else 0

    def positions_in_batch(self, batch: dict[str, torch.Tensor]) -> int:
        """Token positions the encoder ran over, padding included: what a bare LSTM on the same shapes counts."""
        return sum(int(value.numel()) for key, value in batch.items() if key == "ids" or key.endswith("_ids"))

    def sequences_in_batch(self, batch: dict[str, torch.Tensor]) -> int:
        """Sequences the encoder ran over (one length each), for the mean padded length of an epoch."""
        return sum(int(value.numel()) for key, value in batch.items() if key == "lengths" or key.endswith("_lengths"))
