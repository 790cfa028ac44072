"""The generic training loop: any Task, AdamW + one-cycle schedule, clipping, early stopping, progress."""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from nlp_suite.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass
class FitConfig:
    """Optimisation settings (conf/train/*.yaml)."""

    epochs: int = 8  # passes over the training split
    batch_size: int = 32  # examples per step
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule
    encoder_lr_factor: float = 1.0  # encoder lr = lr * factor (discriminative lr; < 1 when fine-tuning)
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm
    patience: int = 3  # epochs without validation improvement before stopping
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0  # shuffling and initialisation
    progress: bool = True  # tqdm bar

    @classmethod
    def from_config(cls, train_cfg: Any, seed: int = 0) -> "FitConfig":
        """Build from a DictConfig/dict, ignoring keys the loop does not use."""
        known = {name: train_cfg[name] for name in cls.__dataclass_fields__ if name in train_cfg}
        return cls(**{"seed": seed, **known})


@dataclass
class FitResult:
    """What training produced: per-epoch history and the best validation metrics."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    tokens_per_second: float = 0.0


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def parameter_groups(model: nn.Module, lr: float, encoder_lr_factor: float) -> list[dict[str, Any]]:
    """Encoder and head in separate groups so the encoder can learn more slowly."""
    encoder = getattr(model, "encoder", None)
    encoder_params = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    head = [p for p in model.parameters() if id(p) not in encoder_params and p.requires_grad]
    groups = [{"params": head, "lr": lr}]
    if encoder is not None:
        groups.append({"params": [p for p in encoder.parameters() if p.requires_grad], "lr": lr * encoder_lr_factor})
    return [group for group in groups if group["params"]]


def fit(model: nn.Module, task: Task, config: FitConfig) -> FitResult:
    """Train `model` on the task's prepared 'train' split, keep the weights of the best 'val' epoch."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    groups = parameter_groups(model, config.lr, config.encoder_lr_factor)
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    result, best_state, best_score, stale = FitResult(), None, -math.inf, 0
    scheduler, start = None, time.perf_counter()
    tokens = 0
    for epoch in range(1, config.epochs + 1):
        batches = list(task.batches("train", config.batch_size, shuffle=True, generator=generator))
        if scheduler is None:  # one-cycle: warm up, then anneal (ULMFiT's slanted triangular, smoothed)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in groups], total_steps=config.epochs * len(batches) + 1,
                pct_start=0.25, anneal_strategy="cos")
        model.train()
        total_loss = 0.0
        bar = tqdm(batches, desc=f"{task.name} epoch {epoch}/{config.epochs}", leave=False,
                   disable=not config.progress, unit="batch")
        for batch in bar:
            batch = {key: value.to(device) for key, value in batch.items()}
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = task.loss(model, batch)
            loss_value = loss.detach()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler.last_epoch + 1 < scheduler.total_steps:
                scheduler.step()
            total_loss += loss_value.item()
            tokens += task.tokens_in_batch(batch)
            bar.set_postfix(loss=f"{total_loss / (bar.n + 1):.3f}", refresh=False)
        metrics = task.evaluate(model, "val")
        row = {"epoch": epoch, "train_loss": total_loss / max(len(batches), 1), **metrics}
        result.history.append(row)
        log.info("%s epoch %d: %s", task.name, epoch, ", ".join(f"{k}={v:.4f}" for k, v in row.items()))
        if metrics[task.monitor] > best_score:
            best_score, stale = metrics[task.monitor], 0
            best_state = copy.deepcopy(model.state_dict())
            result.best_epoch, result.best_metrics = epoch, metrics
        else:
            stale += 1
            if stale >= config.patience:
                log.info("%s: early stop after epoch %d (best %d)", task.name, epoch, result.best_epoch)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    result.tokens_per_second = tokens / result.seconds if result.seconds else 0.0
    return result
