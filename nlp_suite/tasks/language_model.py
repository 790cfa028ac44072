"""Language-model pretraining of the shared encoder on unlabelled text (ULMFiT's first stage)."""
from __future__ import annotations

import math
import random
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nlp_suite.data.corpus import read_corpus
from nlp_suite.models.encoder import Encoder
from nlp_suite.models.lm import LanguageModel, language_model_loss
from nlp_suite.tasks.base import Task
from nlp_suite.text.tokenizer import TextTokenizer


class LanguageModelTask(Task):
    """Texts are tokenized, joined with [EOS] and cut into packed rows of `seq_len` tokens (no padding at all)."""

    monitor = "neg_perplexity"  # higher is better, like every monitored metric

    def __init__(self, name: str = "lm", sources: list[dict[str, Any]] | None = None, seq_len: int = 64,
                 val_fraction: float = 0.02, max_documents: int | None = None, **_: Any):
        self.name = name
        self.sources = list(sources or [])  # where the unlabelled text comes from (conf/task/lm.yaml)
        self.seq_len = seq_len  # tokens per training row
        self.val_fraction = val_fraction  # share of documents held out for perplexity
        self.max_documents = max_documents  # cap for quick runs
        self.rows: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def load_data(self, cfg: DictConfig) -> dict[str, Any]:
        specs = OmegaConf.to_container(OmegaConf.create(self.sources), resolve=True) if self.sources else []
        texts, self.counts = read_corpus(specs, cfg.paths.shared_data)
        random.Random(cfg.seed).shuffle(texts)  # sources are concatenated; mix them before holding out
        if self.max_documents:
            texts = texts[: self.max_documents]
        held_out = max(1, int(len(texts) * self.val_fraction))
        return {"train": texts[held_out:], "val": texts[:held_out]}

    def corpus(self, data: dict[str, Any]) -> list[str]:
        return list(data["train"])

    def prepare(self, data: dict[str, Any], tokenizer: TextTokenizer, max_len: int) -> None:
        eos = tokenizer.tokenizer.token_to_id("[EOS]")
        for split, texts in data.items():
            stream: list[int] = []
            for ids in tokenizer.encode(list(texts), max_len=10**9):
                stream.extend(ids)
                stream.append(eos)
            usable = len(stream) // self.seq_len * self.seq_len
            if usable == 0:
                raise ValueError(f"language model {split} split has only {len(stream)} tokens; need {self.seq_len}")
            self.rows[split] = torch.tensor(stream[:usable], dtype=torch.long).view(-1, self.seq_len)  # (N, T)

    def build_model(self, encoder: Encoder) -> nn.Module:
        return LanguageModel(encoder)

    def batches(self, split: str, batch_size: int, shuffle: bool,
                generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        rows = self.rows[split]
        order = torch.randperm(len(rows), generator=generator) if shuffle else torch.arange(len(rows))
        for start in range(0, len(rows), batch_size):
            ids = rows[order[start:start + batch_size]]
            yield {"ids": ids, "lengths": torch.full((len(ids),), self.seq_len, dtype=torch.long)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return language_model_loss(model(batch["ids"], batch["lengths"]), batch["ids"], batch["lengths"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        model.eval()
        device = next(model.parameters()).device
        total, batches = 0.0, 0
        for batch in self.batches(split, 128, shuffle=False):
            total += float(self.loss(model, {k: v.to(device) for k, v in batch.items()}))
            batches += 1
        loss = total / max(batches, 1)
        perplexity = math.exp(min(loss, 50.0))
        return {"loss": loss, "perplexity": perplexity, "neg_perplexity": -perplexity}

    def state(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "sources": self.counts}

    def load_state(self, state: dict[str, Any]) -> None:
        self.seq_len = int(state.get("seq_len", self.seq_len))
        self.counts = dict(state.get("sources", {}))
