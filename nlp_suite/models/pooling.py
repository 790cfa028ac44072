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
        lengths = mask.sum(dim=1)  # (B,)
        rows = torch.arange(states.size(0), device=states.device)
        last = states[rows, lengths - 1]  # (B, H): forward direction ends at the last real token
        if self.bidirectional:
            # The backward direction ends at position 0.
            last = torch.cat([last[:, : self.hidden_dim], states[:, 0, self.hidden_dim:]], dim=1)
        masked = states.masked_fill(~mask[:, :, None], float("-inf"))
        max_pool = masked.max(dim=1).values  # (B, H)
        mean_pool = (states * mask[:, :, None]).sum(dim=1) / lengths[:, None].clamp(min=1)  # (B, H)
        return torch.cat([last, max_pool, mean_pool], dim=1)  # (B, 3H)
