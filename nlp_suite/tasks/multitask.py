"""Multi-task fine-tuning: one shared encoder, one head per sub-task, mixed batches from a seeded schedule.

Each sub-task is an ordinary configured Task (conf/task/<name>.yaml composed under `task.tasks.<name>`); every
batch comes from one sub-task and carries its index, so `loss()` sends it to that sub-task's head.

Batch schedule (`temperature`):
- 1.0 (default): proportional. An epoch is every batch of every sub-task exactly once, in a seeded random
  interleaving of the sub-tasks, so each sub-task gets its share n_k / sum(n) of the steps at every point of the
  epoch (not blocks of one task, which would make the shared encoder drift towards whichever task ran last).
- T != 1: temperature sampling. Each step draws sub-task k with p_k ∝ n_k^(1/T) (T > 1 favours small sub-tasks,
  T → ∞ is uniform); a sub-task that runs out of batches starts a new shuffled pass. The epoch length stays
  sum(n), so the loop's one-cycle schedule and progress bar still fit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from nlp_suite.models.encoder import Encoder, EncoderConfig
from nlp_suite.tasks.base import Task
from nlp_suite.text.tokenizer import TextTokenizer
from nlp_suite.training.checkpoint import CheckpointError, instantiate_task, load_checkpoint, save_checkpoint

ALWAYS_PREPARED = ("train", "val")  # splits every task has; others (test) only some sub-tasks have
NOT_TASK_PARAMS = ("_target_", "train_overrides")  # config keys that are not constructor arguments


def subtask_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments of a sub-task config (what train.py's `build_task` keeps for a single task)."""
    return {key: value for key, value in spec.items() if key not in NOT_TASK_PARAMS}


def build_subtask(spec: Mapping[str, Any]) -> Task:
    """A sub-task from its config; like a checkpoint, only classes in nlp_suite.tasks are imported."""
    if "_target_" not in spec:
        raise ValueError(f"sub-task config has no _target_: {dict(spec)}")
    return instantiate_task(str(spec["_target_"]), subtask_params(spec))


class MultiTaskModel(nn.Module):
    """The shared encoder plus `heads[name]`: each sub-task's own model (e.g. EncoderWithHead) on that encoder."""

    # A head is a normal single-task model, usable on its own (see `export_subtask`). All heads hold the same
    # encoder object, so parameters() lists it once; state_dict() keeps it once too, under `encoder.`: the copies
    # would be redundant, and safetensors refuses tensors that share memory.

    def __init__(self, encoder: Encoder, heads: Mapping[str, nn.Module]):
        super().__init__()
        for name, head in heads.items():
            if getattr(head, "encoder", None) is not encoder:
                raise ValueError(f"sub-task {name!r}: its model must hold the shared encoder as `.encoder`")
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))

    def encoder_aliases(self) -> list[str]:
        """Module paths other than `encoder` that reach the shared encoder, e.g. `heads.reply.encoder`."""
        return [path for path, module in self.named_modules(remove_duplicate=False)
                if module is self.encoder and path != "encoder"]

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False
                   ) -> dict[str, Any]:
        """The usual state dict without the encoder's aliases."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        aliases = tuple(f"{prefix}{alias}." for alias in self.encoder_aliases())
        for key in [key for key in state if key.startswith(aliases)]:
            del state[key]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load a state dict from `state_dict()`: the encoder's entries are fanned out to its aliases."""
        state = dict(state_dict)
        encoder_entries = [(key[len("encoder."):], value) for key, value in state_dict.items()
                           if key.startswith("encoder.")]
        for alias in self.encoder_aliases():
            state.update({f"{alias}.{rest}": value for rest, value in encoder_entries})
        return super().load_state_dict(state, strict=strict, assign=assign)


class MultiTask(Task):
    """Several configured sub-tasks trained together: one shared encoder, one head each, mixed batches."""

    monitor = "mean_monitor"  # mean over sub-tasks of each one's own monitored metric (e.g. sentiment/macro_f1)

    def __init__(self, tasks: Mapping[str, Mapping[str, Any]], name: str = "multitask", temperature: float = 1.0,
                 _recursive_: bool = False):  # Hydra consumes `_recursive_`; a checkpoint's params still carry it
        if not tasks:
            raise ValueError("multitask: `tasks` is empty; configure at least one sub-task")
        if temperature <= 0:
            raise ValueError(f"multitask: temperature must be > 0, got {temperature}")
        self.name = name
        self.temperature = float(temperature)
        # Sorted, so head indexes do not depend on config order (the manifest's JSON stores keys sorted anyway).
        self.names = sorted(tasks)
        self.subtasks: dict[str, Task] = {name: build_subtask(tasks[name]) for name in self.names}
        self.specs = {name: dict(tasks[name]) for name in self.names}
        self._batch_counts: dict[tuple[str, str, int], int] = {}

    # --- data --------------------------------------------------------------------------------------------------

    def load_data(self, cfg: DictConfig) -> dict[str, Any]:
        """{sub-task name: that sub-task's own data}."""
        return {name: self.subtasks[name].load_data(cfg) for name in self.names}

    def corpus(self, data: dict[str, Any]) -> list[str]:
        """Every sub-task's tokenizer corpus, concatenated, so the one tokenizer covers all of them."""
        return [text for name in self.names for text in self.subtasks[name].corpus(data[name])]

    def prepare(self, data: dict[str, Any], tokenizer: TextTokenizer, max_len: int) -> None:
        for name in self.names:
            self.subtasks[name].prepare(data[name], tokenizer, max_len)
        self._batch_counts.clear()

    @property
    def splits(self) -> dict[str, list[str]]:
        """Prepared split -> sub-tasks that have it (train.py reports `test` when any sub-task has one)."""
        found = {split: list(self.names) for split in ALWAYS_PREPARED}
        for name in self.names:
            for split in getattr(self.subtasks[name], "splits", {}):
                found.setdefault(split, [])
                if name not in found[split]:
                    found[split].append(name)
        return found

    def with_split(self, split: str) -> list[str]:
        """Sub-tasks that have a prepared `split`."""
        return self.splits.get(split, [])

    # --- model, batches, loss -------------------------------------------------------------------------------------

    def build_model(self, encoder: Encoder) -> nn.Module:
        return MultiTaskModel(encoder, {name: self.subtasks[name].build_model(encoder) for name in self.names})

    def batch_count(self, name: str, split: str, batch_size: int) -> int:
        """Batches of one sub-task's split (cached: prepared data does not change, shuffling keeps the count)."""
        key = (name, split, batch_size)
        if key not in self._batch_counts:
            self._batch_counts[key] = sum(1 for _ in self.subtasks[name].batches(split, batch_size, shuffle=False))
        return self._batch_counts[key]

    def schedule(self, counts: list[int], shuffle: bool, generator: torch.Generator | None) -> list[int]:
        """Position (in `counts`) of the sub-task that supplies each batch of one pass; sum(counts) long."""
        if not counts:
            return []
        blocks = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts, dtype=torch.long))
        if not shuffle:
            return blocks.tolist()  # sub-task after sub-task: deterministic passes (counting, evaluation)
        if self.temperature == 1.0:
            return blocks[torch.randperm(len(blocks), generator=generator)].tolist()
        weights = torch.tensor(counts, dtype=torch.float64) ** (1.0 / self.temperature)
        return torch.multinomial(weights, len(blocks), replacement=True, generator=generator).tolist()

    def stream(self, name: str, split: str, batch_size: int, shuffle: bool,
               generator: torch.Generator | None) -> Iterator[dict[str, torch.Tensor]]:
        """A sub-task's batches, pass after pass (temperature sampling may ask for more than one pass)."""
        while True:
            yield from self.subtasks[name].batches(split, batch_size, shuffle, generator)

    def batches(self, split: str, batch_size: int, shuffle: bool,
                generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Mixed batches: each is one sub-task's batch plus `task`, a () long tensor with its index in `names`."""
        names = [name for name in self.with_split(split) if self.batch_count(name, split, batch_size) > 0]
        order = self.schedule([self.batch_count(name, split, batch_size) for name in names], shuffle, generator)
        streams = [self.stream(name, split, batch_size, shuffle, generator) for name in names]
        indexes = [torch.tensor(self.names.index(name), dtype=torch.long) for name in names]
        for position in order:
            yield {**next(streams[position]), "task": indexes[position]}

    def subtask_of(self, batch: dict[str, torch.Tensor]) -> str:
        """Name of the sub-task a mixed batch came from."""
        return self.names[int(batch["task"])]  # one host sync per batch on CUDA: dispatch is Python control flow

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        name = self.subtask_of(batch)
        return self.subtasks[name].loss(model.heads[name], batch)

    def tokens_in_batch(self, batch: dict[str, torch.Tensor]) -> int:
        return self.subtasks[self.subtask_of(batch)].tokens_in_batch(batch)

    # --- metrics and state ------------------------------------------------------------------------------------

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Each sub-task's metrics as `<name>/<metric>`, plus `mean_monitor` over the sub-tasks evaluated."""
        metrics: dict[str, float] = {}
        monitored = []
        for name in self.with_split(split):
            task = self.subtasks[name]
            values = task.evaluate(model.heads[name], split)
            metrics.update({f"{name}/{key}": value for key, value in values.items()})
            monitored.append(values[task.monitor])
        metrics[self.monitor] = float(np.mean(monitored))
        return metrics

    def on_new_best(self) -> None:
        """The loop keeps this epoch: every sub-task commits what it chose on validation (e.g. reply thresholds)."""
        for name in self.names:
            self.subtasks[name].on_new_best()

    def state(self) -> dict[str, Any]:
        return {"tasks": {name: self.subtasks[name].state() for name in self.names}}

    def load_state(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.names) - set(state["tasks"]))
        if missing:
            raise ValueError(f"multitask state has no sub-task state for {missing}")
        for name in self.names:
            self.subtasks[name].load_state(state["tasks"][name])


def subtask_metrics(metrics: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A sub-task's own metrics out of a multitask manifest: `reply/accuracy` -> `accuracy` (and `test_` ones)."""
    picked = {}
    for key, value in metrics.items():
        for prefix, renamed in ((f"{name}/", ""), (f"test_{name}/", "test_")):
            if key.startswith(prefix):
                picked[renamed + key[len(prefix):]] = value
    return picked


def export_subtask(source: Path, name: str, directory: Path) -> str:
    """Save one sub-task of a multitask model folder as a normal single-task model folder; returns its sha256."""
    # Same encoder weights, that sub-task's head and state, same tokenizer: ready for `registry.register`.
    loaded = load_checkpoint(Path(source))
    if not isinstance(loaded.task, MultiTask):
        raise CheckpointError(f"{source}: not a multitask model ({loaded.manifest['task']['target']})")
    if name not in loaded.task.subtasks:
        raise CheckpointError(f"{source}: no sub-task {name!r}; has {loaded.task.names}")
    task = loaded.task.subtasks[name]
    manifest = loaded.manifest
    extra = {"monitor": task.monitor, "exported_from": str(source), "exported_subtask": name,
             "data_fingerprint": manifest.get("data_fingerprint"), "pretrained_from": manifest.get("pretrained_from")}
    return save_checkpoint(Path(directory), loaded.model.heads[name], task, subtask_params(loaded.task.specs[name]),
                           loaded.tokenizer, EncoderConfig(**manifest["encoder"]), loaded.max_len,
                           subtask_metrics(manifest["metrics"], name), extra=extra)
