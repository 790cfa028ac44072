"""Model files: safetensors weights + tokenizer.json + model.json manifest with sha256 of each file.

Nothing is unpickled: weights are safetensors, everything else is JSON, and the task class named in the
manifest must live in `nlp_suite.tasks`, so a tampered manifest cannot import arbitrary code.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import nlp_suite
from nlp_suite.models.encoder import Encoder, EncoderConfig
from nlp_suite.models.ensemble import Ensemble, ensemble_members
from nlp_suite.paths import project_root
from nlp_suite.storage.base import utcnow
from nlp_suite.tasks.base import Task
from nlp_suite.text.tokenizer import TextTokenizer

FORMAT_VERSION = 1
WEIGHTS, TOKENIZER, MANIFEST = "model.safetensors", "tokenizer.json", "model.json"
ALLOWED_TASK_PREFIX = "nlp_suite.tasks."


class CheckpointError(ValueError):
    """A model folder is missing, incomplete, tampered with or from an incompatible version."""


@dataclass
class LoadedModel:
    """A model rebuilt from disk, ready for prediction."""

    model: nn.Module
    task: Task
    tokenizer: TextTokenizer
    manifest: dict[str, Any]

    @property
    def max_len(self) -> int:
        """Token limit the model was trained with."""
        return int(self.manifest["max_len"])


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """Package version plus git commit when run from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(), capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{nlp_suite.__version__}+{commit}" if commit else nlp_suite.__version__


def task_target(task: Task) -> str:
    """Import path of a task class."""
    return f"{type(task).__module__}.{type(task).__qualname__}"


def save_checkpoint(directory: Path, model: nn.Module, task: Task, task_params: dict[str, Any],
                    tokenizer: TextTokenizer, encoder_config: EncoderConfig, max_len: int,
                    metrics: dict[str, float], extra: dict[str, Any] | None = None) -> str:
    """Write the three files; returns the manifest's sha256 (the id the registry stores)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    (directory / TOKENIZER).write_text(tokenizer.to_json(), encoding="utf-8")
    manifest = {
        "format_version": FORMAT_VERSION,
        "task": {"target": task_target(task), "params": task_params, "state": task.state()},
        "encoder": encoder_config.to_dict(),
        "max_len": max_len,
        "ensemble_size": len(ensemble_members(model)),  # > 1: members.<k>.* weights, averaged probabilities
        "metrics": metrics,
        "code_version": code_version(),
        "created_at": utcnow().isoformat(),
        "files": {name: sha256_file(directory / name) for name in (WEIGHTS, TOKENIZER)},
        **(extra or {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return sha256_file(directory / MANIFEST)


def instantiate_task(target: str, params: dict[str, Any]) -> Task:
    """Create a task from its import path, refusing anything outside nlp_suite.tasks."""
    if not target.startswith(ALLOWED_TASK_PREFIX):
        raise CheckpointError(f"task class {target!r} is not in {ALLOWED_TASK_PREFIX}*; refusing to import it")
    module_name, _, class_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise CheckpointError(f"{target!r} is not a Task class")
    return cls(**params)


def load_checkpoint(directory: Path, expected_sha256: str | None = None, device: str | torch.device = "cpu"
                    ) -> LoadedModel:
    """Verify every file's sha256, then rebuild task, tokenizer and model (strict state-dict load)."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{directory}: no {MANIFEST}; not a model folder")
    if expected_sha256 and sha256_file(manifest_path) != expected_sha256:
        raise CheckpointError(f"{manifest_path}: sha256 differs from the registry's; the file was changed")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{manifest_path}: format_version {manifest.get('format_version')!r}, "
                              f"this code reads {FORMAT_VERSION}")
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        if sha256_file(path) != expected:
            raise CheckpointError(f"{path}: sha256 mismatch; the file was changed or corrupted")
    task = instantiate_task(manifest["task"]["target"], manifest["task"]["params"])
    task.load_state(manifest["task"]["state"])
    tokenizer = TextTokenizer.load(directory / TOKENIZER)
    size = manifest.get("ensemble_size", 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise CheckpointError(f"{manifest_path}: ensemble_size {size!r} is not a positive integer")
    members = [task.build_model(Encoder(EncoderConfig(**manifest["encoder"]))) for _ in range(size)]
    model = Ensemble(members) if size > 1 else members[0]
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS)), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{directory / WEIGHTS}: weights do not fit the model: {error}") from None
    return LoadedModel(model=model.to(device).eval(), task=task, tokenizer=tokenizer, manifest=manifest)
