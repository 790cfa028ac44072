"""Several classifiers of one task, trained from different seeds on the same data, served as one model.

Averaging the class probabilities of independently trained networks is the oldest reliable gain in deep learning
(Hansen & Salamon 1990; Lakshminarayanan et al. 2017): members make partly different errors, so the average is
more accurate and better calibrated than a typical member. A distilled LSTM student is small and fast (~1.4M-3M
parameters, thousands of texts/s on 2 CPU cores), so three of them still cost a fraction of the transformer teacher
they learn from. All members share one tokenizer, so a text is tokenised once.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """(B, T) ids -> (B, C) log of the members' mean class probabilities (softmax of it gives that mean back)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members (got {len(members)})")
        self.members = nn.ModuleList(members)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return mean_probabilities([m(ids, lengths) for m in self.members]).clamp_min(1e-12).log()  # (B, C)


def mean_probabilities(member_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """K tensors of (B, C) logits -> (B, C) mean softmax: the mean of probabilities, not of logits, because the
    members' logit scales differ while their probabilities are comparable."""
    return torch.stack([torch.softmax(logits.float(), dim=-1) for logits in member_logits]).mean(dim=0)


def ensemble_members(model: nn.Module) -> list[nn.Module]:
    """The members of an Ensemble, or the model itself as the only member."""
    return list(model.members) if isinstance(model, Ensemble) else [model]
