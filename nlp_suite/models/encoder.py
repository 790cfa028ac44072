"""The shared encoder: token embedding + (bi)LSTM over packed sequences. Stateless: no state kept across batches."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class EncoderConfig:
    """Shape of the shared encoder; saved with every checkpoint."""

    vocab_size: int  # rows of the embedding table (tokenizer vocabulary)
    embed_dim: int = 64  # token embedding width
    hidden_dim: int = 64  # recurrent hidden size per direction
    num_layers: int = 1  # stacked recurrent layers
    bidirectional: bool = True  # also read right-to-left
    dropout: float = 0.1  # dropout on embeddings, between layers and on outputs
    rnn: str = "lstm"  # lstm | gru
    pad_id: int = 0  # padding token id (embedding row kept at zero)

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


class Encoder(nn.Module):
    """(B, T) token ids + (B,) lengths -> (B, T, H) states and (B, T) mask of real tokens."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.rnn not in ("lstm", "gru"):
            raise ValueError(f"EncoderConfig.rnn must be 'lstm' or 'gru', got {config.rnn!r}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        rnn_class = nn.LSTM if config.rnn == "lstm" else nn.GRU
        self.rnn = rnn_class(config.embed_dim, config.hidden_dim, num_layers=config.num_layers, batch_first=True,
                             bidirectional=config.bidirectional,
                             dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def output_dim(self) -> int:
        """Width H of each output state."""
        return self.config.hidden_dim * (2 if self.config.bidirectional else 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.dropout(self.embedding(ids))  # (B, T, E)
        # Packing skips padded steps, so results do not depend on how much padding a batch has.
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, _ = self.rnn(packed)  # fresh zero state every call: stateless
        states, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=ids.size(1))  # (B, T, H)
        mask = torch.arange(ids.size(1), device=ids.device)[None, :] < lengths.to(ids.device)[:, None]  # (B, T)
        return self.dropout(states), mask
