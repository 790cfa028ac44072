"""An exponential moving average of a model's weights during training (Polyak averaging).

The averaged weights sit in a flatter region of the loss than the last step's weights and wobble less from
epoch to epoch, so the validation score that picks the kept epoch is less noisy (Polyak & Juditsky 1992;
Izmailov et al. 2018; timm's ModelEmaV2). The loop evaluates and keeps the averaged copy; the raw weights go on
training untouched, and the average uses no random numbers, so a run's raw trajectory is the same with it on.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(horizon_epochs: float, steps_per_epoch: int) -> float:
    """Per-step decay whose memory (1 / (1 - decay) steps) spans `horizon_epochs` of training."""
    if horizon_epochs <= 0:
        raise ValueError(f"train.ema_epochs must be > 0 to average weights (got {horizon_epochs})")
    return 1.0 - 1.0 / max(1.0, horizon_epochs * steps_per_epoch)


class WeightAverage:
    """A frozen copy of `model` whose trainable parameters follow theirs as an exponential moving average."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1) (got {decay})")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward `model`'s current weights; early on faster ((1 + n) / (10 + n), as TensorFlow's
        ExponentialMovingAverage), so the first epochs are not dominated by the random start."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for averaged, current in zip(self.model.parameters(), model.parameters()):
            # Frozen parameters (e.g. teacher-initialised embeddings) never move, so their average is their value.
            if current.requires_grad:
                averaged.lerp_(current.detach(), 1.0 - decay)
        for averaged, current in zip(self.model.buffers(), model.buffers()):
            averaged.copy_(current)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (what is evaluated and kept), keyed as the model's own state_dict."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore averaged weights saved with a resume point, `updates` steps into training (for the warm-up)."""
        self.model.load_state_dict(state)
        self.updates = updates
