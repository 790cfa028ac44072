"""Knowledge distillation into the LSTM: a teacher's soft targets on labelled and unlabelled (transfer) texts.

Hinton et al. (2015): loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(gold), where _T is a
softmax at temperature T. Transfer rows have no gold label and add only the KL term, so the student learns the
teacher's behaviour on many more texts than were labelled.

`attach(task, data, cfg)` runs between `task.load_data` and `task.prepare` in `train(cfg)`: it reads the transfer
texts (the pretraining source specs of data/corpus.py), drops any that are in the task's validation or test split
(the teacher must not pass test knowledge to the student), gets the teacher's log-probabilities (cached under
`distill.cache_dir`, keyed by teacher, labelled data and texts) and appends the transfer rows to `train`.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.numpy import load_file, save_file
from torch.nn import functional as F

from nlp_suite.models.backbones import backbone_available
from nlp_suite.models.teacher import (
    CheckpointTeacher,
    TransformerTeacher,
    TransformerTeacherConfig,
    ensemble_log_probs,
    fingerprint,
)
from nlp_suite.training.checkpoint import sha256_file

log = logging.getLogger(__name__)

TRANSFORMER_TEACHERS = ("minilm", "mpnet", "local")  # backbones fine-tuned here (models/backbones.py)
DISTILL_LOSSES = ("kl", "mse")
UNLABELLED = -100  # target of a transfer row: cross-entropy ignores it (F.cross_entropy's ignore_index)


@dataclass
class DistillConfig:
    """conf/distill/*.yaml."""

    enabled: bool = False  # off: plain supervised fine-tuning
    teacher: str = "minilm"  # minilm | mpnet | local (fine-tuned transformers, models/backbones.py) | checkpoint
    teacher_paths: list[str] = field(default_factory=list)  # teacher=checkpoint: model folders (several = ensemble)
    teacher_dir: str | None = None  # teacher=local: a sentence-transformers folder with model.safetensors
    seeds: list[int] = field(default_factory=lambda: [0])  # transformer teachers: one fine-tuning per seed (ensemble)
    alpha: float = 0.5  # weight of the soft (KL) term; 1 - alpha goes to cross-entropy on gold labels
    temperature: float = 2.0  # softens both distributions so the teacher's runner-up classes carry information
    loss: str = "kl"  # kl (Hinton et al.) | mse: squared error between centred logits (Tang et al. 2019)
    transfer: list[dict[str, Any]] = field(default_factory=list)  # unlabelled text sources (data/corpus.py specs)
    max_transfer: int | None = None  # seeded sample of at most this many transfer texts (None = all)
    cache_dir: str = "var/teachers"  # fine-tuned teachers and their labellings, reused by identical runs
    teacher_device: str = "auto"  # auto | cpu | cuda
    teacher_train: dict[str, Any] = field(default_factory=dict)  # TransformerTeacherConfig fields

    @classmethod
    def from_config(cls, node: Any) -> "DistillConfig":
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"distill: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        config = cls(**values)
        if config.teacher not in (*TRANSFORMER_TEACHERS, "checkpoint"):
            raise ValueError(f"distill.teacher={config.teacher!r}: use minilm, mpnet, local or checkpoint")
        if config.teacher == "local" and not config.teacher_dir:
            raise ValueError("distill.teacher=local needs distill.teacher_dir (a sentence-transformers folder)")
        if config.teacher == "checkpoint" and not config.teacher_paths:
            raise ValueError("distill.teacher=checkpoint needs distill.teacher_paths (trained model folders)")
        if config.loss not in DISTILL_LOSSES:
            raise ValueError(f"distill.loss={config.loss!r}: use one of {', '.join(DISTILL_LOSSES)}")
        if not 0.0 <= config.alpha <= 1.0 or config.temperature <= 0:
            raise ValueError(f"distill.alpha must be in [0, 1] and temperature > 0 (got {config.alpha}, "
                             f"{config.temperature})")
        return config


def distillation_loss(student: torch.Tensor, targets: torch.Tensor, teacher: torch.Tensor, alpha: float,
                      temperature: float, loss: str = "kl") -> torch.Tensor:
    """alpha * soft term on every row + (1 - alpha) * CE on rows with a gold label (targets != UNLABELLED).

    The soft term is T^2 * KL at temperature T (`kl`), or (`mse`) the mean squared error between the student's
    logits and the teacher's log-probabilities, both centred over classes: log-probabilities are logits up to a
    per-row constant, and centring removes it. MSE on logits does not saturate where the teacher is confident.
    """
    if loss == "mse":
        centred = student.float() - student.float().mean(dim=1, keepdim=True)  # (B, C)
        target = teacher.float() - teacher.float().mean(dim=1, keepdim=True)  # (B, C)
        soft = F.mse_loss(centred, target, reduction="sum") / student.size(0)  # summed over classes, mean over rows
    else:
        t = temperature
        soft = F.kl_div(F.log_softmax(student.float() / t, dim=1), F.log_softmax(teacher.float() / t, dim=1),
                        log_target=True, reduction="batchmean") * (t * t)  # T^2 keeps gradients comparable across T
    if not bool((targets != UNLABELLED).any()):
        return alpha * soft
    hard = F.cross_entropy(student.float(), targets, ignore_index=UNLABELLED)
    return alpha * soft + (1.0 - alpha) * hard


def transfer_texts(config: DistillConfig, shared_root: Path, exclude: set[str], seed: int
                   ) -> tuple[list[str], dict[str, int]]:
    """The configured unlabelled texts minus `exclude` (evaluation texts), deduplicated, sampled to max_transfer."""
    from nlp_suite.data.corpus import read_corpus

    if not config.transfer:
        return [], {}
    texts, counts = read_corpus(config.transfer, shared_root)
    kept = [t for t in texts if t not in exclude]
    counts = {**counts, "excluded_evaluation_texts": len(texts) - len(kept)}
    if config.max_transfer is not None and len(kept) > config.max_transfer:
        keep = np.sort(np.random.default_rng(seed).permutation(len(kept))[: config.max_transfer])
        kept = [kept[i] for i in keep]
        counts["sampled"] = len(kept)
    return kept, counts


def build_teachers(config: DistillConfig, labels: list[str], data: dict[str, Any], progress: bool = True
                   ) -> list[Any]:
    """The configured teachers, fine-tuned (or loaded from the cache) on the labelled train split."""
    if config.teacher == "checkpoint":
        return [CheckpointTeacher(path, labels) for path in config.teacher_paths]
    from nlp_suite.training.loop import resolve_device

    device = str(resolve_device(config.teacher_device))
    why = backbone_available(config.teacher, config.teacher_dir)
    if why:  # before hashing a local folder's weights: say what is missing, not which file failed to open
        raise RuntimeError(f"the {config.teacher} teacher backbone is unavailable: {why}")
    backbone = (config.teacher if config.teacher != "local"  # a local folder is known by its weights (hashed once)
                else f"local:{sha256_file(Path(str(config.teacher_dir)) / 'model.safetensors')}")
    teachers = []
    for seed in config.seeds:
        settings = TransformerTeacherConfig(**{"progress": progress, **config.teacher_train, "seed": int(seed)})
        teacher = TransformerTeacher(labels, settings, device, config.teacher, config.cache_dir, config.teacher_dir)
        identity = fingerprint(backbone, labels, {k: v for k, v in vars(settings).items() if k != "progress"},
                               list(data["train"][0]), list(data["train"][1]), list(data["val"][0]),
                               list(data["val"][1]))
        folder = Path(config.cache_dir) / f"{config.teacher}-{identity[:16]}"
        if teacher.load(folder, identity):
            log.info("teacher seed %d: loaded from %s", seed, folder)
        else:
            log.info("teacher seed %d: fine-tuning %s on %d labelled texts", seed, config.teacher,
                     len(data["train"][0]))
            teacher.fit(data["train"], data["val"])
            teacher.save(folder, identity)
        teacher.identity = identity
        teachers.append(teacher)
    return teachers


def label_texts(teachers: list[Any], texts: list[str], cache_dir: Path) -> np.ndarray:
    """Ensemble log-probabilities of `texts`, cached per (teachers, texts)."""
    members = [teacher.identity for teacher in teachers]
    key = fingerprint(members, texts)[:24]
    path = cache_dir / f"labels-{key}.safetensors"
    if path.exists():
        log.info("teacher labels of %d texts loaded from %s", len(texts), path)
        return load_file(str(path))["log_probs"]
    out = ensemble_log_probs([teacher.log_probs(texts) for teacher in teachers])
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_file({"log_probs": out}, str(path), metadata={"members": json.dumps(members), "texts": str(len(texts))})
    return out


def attach(task: Any, data: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """Add the teacher's soft targets to `data['train']` (labelled rows + transfer rows); returns a report."""
    from nlp_suite.tasks.classification import TextClassificationTask

    if not isinstance(task, TextClassificationTask):
        raise ValueError(f"distill=... works with text-classification tasks (sentiment, reply); task "
                         f"{task.name!r} is {type(task).__name__}: use distill=none")
    config = DistillConfig.from_config(cfg.distill)
    start = time.perf_counter()
    labels = list(task.labels)
    train_texts, train_labels = list(data["train"][0]), list(data["train"][1])
    evaluation = {text for split, part in data.items() if split != "train" for text in part[0]}
    transfer, counts = transfer_texts(config, Path(str(cfg.paths.shared_data)), evaluation | set(train_texts),
                                      int(cfg.seed))
    teachers = build_teachers(config, labels, data, progress=bool(cfg.train.get("progress", True)))
    teacher_seconds = time.perf_counter() - start
    soft = label_texts(teachers, train_texts + transfer, Path(config.cache_dir))
    data["train"] = (train_texts + transfer, train_labels + [None] * len(transfer), soft)
    task.distillation = (config.alpha, config.temperature, config.loss)
    report = {"teacher": config.teacher, "members": len(teachers), "alpha": config.alpha, "loss": config.loss,
              "temperature": config.temperature, "labelled_rows": len(train_texts), "transfer_rows": len(transfer),
              "transfer_sources": counts, "teacher_reports": [getattr(t, "report", {}) for t in teachers],
              "teacher_train_agreement": float(np.mean(
                  [labels[i] == y for i, y in zip(soft[: len(train_texts)].argmax(axis=1), train_labels)])),
              "seconds": round(time.perf_counter() - start, 1), "teacher_seconds": round(teacher_seconds, 1)}
    log.info("distillation: %d labelled + %d transfer rows, %d teacher(s), %.0f s", len(train_texts), len(transfer),
             len(teachers), report["seconds"])
    return report


def summary_markdown(report: dict[str, Any] | None) -> str:
    """A few lines for the training artifact: teachers' validation scores, rows, time; empty without distillation."""
    if not report:
        return ""
    teachers = "; ".join(
        f"val acc {r['best_val']['accuracy']:.3f} / macro-F1 {r['best_val']['macro_f1']:.3f}"
        + (" (cached)" if "loaded_from_cache" in r else f", {r.get('train_seconds', 0):.0f} s")
        for r in report.get("teacher_reports", []) if r.get("best_val")) or "checkpoint teacher(s)"
    return (f"distillation: {report['members']} {report['teacher']} teacher(s) ({teachers}); "
            f"{report['labelled_rows']:,} labelled + {report['transfer_rows']:,} transfer rows; alpha "
            f"{report['alpha']}, T {report['temperature']}; teacher + labelling {report['seconds']:.0f} s")
