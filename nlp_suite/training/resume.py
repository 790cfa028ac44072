"""Resumable training state (model, optimizer, schedule, position, best weights) as safetensors + JSON.

Written atomically every few steps, so an interrupted run (Ctrl+C, SIGKILL, preemption) continues where the
last save left it, with the same batch order; nothing is unpickled on load.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE, META = "resume.safetensors", "resume.json"


@dataclass
class ResumePoint:
    """Where a run stands; tensors and plain data kept apart for safetensors + JSON."""

    epoch: int  # epoch in progress (1-based)
    step_in_epoch: int  # batches of that epoch already done
    global_step: int
    tokens: int
    best_score: float
    best_epoch: int
    stale: int
    fingerprint: str  # the run's settings; a resume file of other settings is ignored
    history: list[dict[str, float]] = field(default_factory=list)
    best_metrics: dict[str, float] = field(default_factory=dict)


def save_resume(directory: Path, point: ResumePoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: Any, epoch_generator_state: torch.Tensor, best_state: dict[str, torch.Tensor] | None,
                average: Any = None) -> None:
    """Write the resume files (temp file + rename, so a crash mid-write keeps the previous save); `average` is the
    loop's WeightAverage, if any."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    for index, values in optim["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    for k, v in (best_state or {}).items():
        tensors[f"best.{k}"] = v.detach().cpu().contiguous()
    if average is not None:
        for k, v in average.state_dict().items():
            tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    tensors["generator"] = epoch_generator_state.clone()
    tensors["torch_rng"] = torch.get_rng_state()  # dropout masks continue exactly as without the interruption
    meta = {"point": point.__dict__, "param_groups": optim["param_groups"], "scheduler": scheduler.state_dict()}
    for name, write in ((STATE, lambda p: save_file(tensors, str(p))),
                        (META, lambda p: p.write_text(json.dumps(meta), encoding="utf-8"))):
        temporary = directory / f".{name}.tmp"
        write(temporary)
        os.replace(temporary, directory / name)


def load_resume(directory: Path, fingerprint: str) -> tuple[ResumePoint, dict[str, Any]] | None:
    """The saved point and raw pieces, or None when there is nothing (or nothing matching) to resume."""
    directory = Path(directory)
    if not (directory / STATE).is_file() or not (directory / META).is_file():
        return None
    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    point = ResumePoint(**meta["point"])
    if point.fingerprint != fingerprint:
        return None
    tensors = load_file(str(directory / STATE))
    pieces = {"model": {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
              "best": {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None,
              "ema": {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")} or None,
              "generator": tensors["generator"], "torch_rng": tensors["torch_rng"], "scheduler": meta["scheduler"]}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    pieces["optimizer"] = {"state": state, "param_groups": meta["param_groups"]}
    return point, pieces


def clear_resume(directory: Path) -> None:
    """Remove resume files once a run has finished."""
    for name in (STATE, META):
        (Path(directory) / name).unlink(missing_ok=True)
