"""Language-model head on the shared encoder: next token from forward states, previous token from backward ones."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nlp_suite.models.encoder import Encoder


class LanguageModel(nn.Module):
    """Encoder + per-direction projection to the embedding width + decoder tied to the embedding matrix."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder
        hidden, embed = encoder.config.hidden_dim, encoder.config.embed_dim
        directions = 2 if encoder.config.bidirectional else 1
        self.projections = nn.ModuleList(nn.Linear(hidden, embed) for _ in range(directions))
        self.bias = nn.Parameter(torch.zeros(encoder.config.vocab_size))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Logits per direction, each (B, T, V); tied weights keep the head small and help small corpora."""
        states, _ = self.encoder(ids, lengths)  # (B, T, H * directions)
        per_direction = states.split(self.encoder.config.hidden_dim, dim=2)
        weight = self.encoder.embedding.weight  # (V, E)
        return [F.linear(project(part), weight, self.bias) for project, part in zip(self.projections, per_direction)]


def language_model_loss(logits: list[torch.Tensor], ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 (forward) and token t-1 (backward) over real tokens."""
    mask = torch.arange(ids.size(1), device=ids.device)[None, :] < lengths[:, None]  # (B, T)
    pair_mask = mask[:, 1:]  # both positions of a (t, t+1) pair are real
    losses = [F.cross_entropy(logits[0][:, :-1][pair_mask], ids[:, 1:][pair_mask])]
    if len(logits) > 1:
        losses.append(F.cross_entropy(logits[1][:, 1:][pair_mask], ids[:, :-1][pair_mask]))
    return torch.stack(losses).mean()
