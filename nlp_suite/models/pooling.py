"""Concat pooling (fastai): [last state, max over time, mean over time] of the encoder outputs."""
from __future__ import annotations

import torch
from torch import nn


class ConcatPooling(nn.Module):
    """(B, T, H) states + (B, T) mask -> (B, 3H); 'last' is the final real step of each direction."""

    def __init__(self, hidden_dim: int, bidirectional: bool):
        super().__init__()
        self.hidden_dim = hidden_dim  # per direction
        self.bidirectional = bidirectional

    def output_dim(self, states_dim: int) -> int:
        """Width of the pooled vector."""
        return 3 * states_dim

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # states past each length are zero (the Encoder's contract), so the mean needs no mask of its own.
        lengths = mask.sum(dim=1)  # (B,)
        rows = torch.arange(states.size(0), device=states.device)
        last = states[rows, lengths - 1]  # (B, H): forward direction ends at the last real token
        if self.bidirectional:
            # The backward direction ends at position 0.
            last = torch.cat([last[:, : self.hidden_dim], states[:, 0, self.hidden_dim:]], dim=1)
        # An additive (B, T, 1) -inf bias rather than masked_fill: same values, and its backward is a no-op.
        padding = torch.zeros(mask.shape, dtype=states.dtype, device=states.device).masked_fill_(~mask, float("-inf"))
        max_pool = (states + padding[:, :, None]).max(dim=1).values  # (B, H)
        mean_pool = states.sum(dim=1) / lengths[:, None].clamp(min=1)  # (B, H)
        return torch.cat([last, max_pool, mean_pool], dim=1)  # (B, 3H)


class AttentionPooling(nn.Module):
    """Additive attention over time: (B, T, H) + mask -> (B, H) and the (B, T) weights that explain it."""

    def __init__(self, states_dim: int, attention_dim: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(states_dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))
        self.last_weights: torch.Tensor | None = None  # kept for explanations (token importance)

    def output_dim(self, states_dim: int) -> int:
        """Width of the pooled vector."""
        return states_dim

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(states).squeeze(2).masked_fill(~mask, float("-inf"))  # (B, T)
        weights = torch.softmax(scores, dim=1)  # (B, T)
        self.last_weights = weights.detach()
        return torch.einsum("bt,bth->bh", weights, states)  # (B, H)


class ConcatAttentionPooling(nn.Module):
    """[last, max, mean, attention]: concat pooling plus an explainable attention summary, (B, 4H)."""

    def __init__(self, hidden_dim: int, bidirectional: bool, states_dim: int):
        super().__init__()
        self.concat = ConcatPooling(hidden_dim, bidirectional)
        self.attention = AttentionPooling(states_dim)

    def output_dim(self, states_dim: int) -> int:
        """Width of the pooled vector."""
        return 4 * states_dim

    @property
    def last_weights(self) -> torch.Tensor | None:
        """Attention weights of the last forward pass, (B, T)."""
        return self.attention.last_weights

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.concat(states, mask), self.attention(states, mask)], dim=1)


def build_pooling(kind: str, hidden_dim: int, bidirectional: bool, states_dim: int) -> nn.Module:
    """'concat' (fastai), 'attention' or 'concat_attention'."""
    if kind == "concat":
        return ConcatPooling(hidden_dim, bidirectional)
    if kind == "attention":
        return AttentionPooling(states_dim)
    if kind == "concat_attention":
        return ConcatAttentionPooling(hidden_dim, bidirectional, states_dim)
    raise ValueError(f"pooling must be concat, attention or concat_attention, got {kind!r}")
