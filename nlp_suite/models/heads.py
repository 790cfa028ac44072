"""Task heads that sit on the shared encoder, and the encoder+head pair (fastai's SequentialRNN, stateless)."""
from __future__ import annotations

import torch
from torch import nn

from nlp_suite.models.encoder import Encoder
from nlp_suite.models.pooling import build_pooling


class PoolingClassifierHead(nn.Module):
    """Pooling -> dropout -> Linear -> ReLU -> dropout -> Linear: (B, T, H) states -> (B, C) logits."""

    def __init__(self, encoder: Encoder, num_classes: int, hidden_dim: int = 64, dropout: float = 0.2,
                 pooling: str = "concat"):
        super().__init__()
        self.pool = build_pooling(pooling, encoder.config.hidden_dim, encoder.config.bidirectional,
                                  encoder.output_dim)
        self.layers = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.pool.output_dim(encoder.output_dim), hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.layers(self.pool(states, mask))  # (B, C)


class EncoderWithHead(nn.Module):
    """The shared encoder followed by one task head; parameters are split for discriminative learning rates."""

    def __init__(self, encoder: Encoder, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head
        # Modules only training losses use (e.g. distillation's hint map); `strip_auxiliary` drops them before saving.
        self.auxiliary = nn.ModuleDict()

    def strip_auxiliary(self) -> None:
        """Remove training-only modules, so the saved model is exactly what serving rebuilds."""
        self.auxiliary = nn.ModuleDict()

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states, mask = self.encoder(ids, lengths)  # (B, T, H), (B, T)
        return self.head(states, mask)
