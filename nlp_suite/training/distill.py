"""Knowledge distillation into the LSTM: a teacher's soft targets on labelled and unlabelled (transfer) texts.

Hinton et al. (2015): loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(gold), where _T is a
softmax at temperature T. Transfer rows have no gold label and add only the KL term, so the student learns the
teacher's behaviour on many more texts than were labelled.

`attach(task, data, cfg)` runs between `task.load_data` and `task.prepare` in `train(cfg)`: it reads the transfer
texts (the pretraining source specs of data/corpus.py), drops any that are in the task's validation or test split
(the teacher must not pass test knowledge to the student), gets the teacher's log-probabilities (cached under
`distill.cache_dir`, keyed by teacher, labelled data and texts) and appends the transfer rows to `train`.

Hint term (`distill.hint_weight` > 0; FitNets, Romero et al. 2015): the student's pooled sentence vector, through a
training-only linear map, also regresses the teacher's sentence embedding of every row (its top principal
components, scaled to unit mean variance). A 3-class soft target says little per text; the embedding says how the
teacher sees the whole sentence. The map is dropped before the model is saved.

Embedding initialisation (`distill.init_embeddings`; Model2Vec-style): each token of our own tokenizer, run
through the teacher as a one-word text, gives a vector; their top principal components (at the scale of the
default N(0, 1) init) start the student's embedding table, so rare words begin near the teacher's view of them.
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
    ProbeTeacher,
    TransformerTeacher,
    TransformerTeacherConfig,
    ensemble_log_probs,
    fingerprint,
    frozen_embedder,
)
from nlp_suite.text.augment import AugmentConfig, augment_texts
from nlp_suite.training.checkpoint import sha256_file

log = logging.getLogger(__name__)

TRANSFORMER_TEACHERS = ("minilm", "mpnet", "local")  # backbones fine-tuned here (models/backbones.py)
DISTILL_LOSSES = ("kl", "mse")
SELECT_ON = ("val", "teacher_agreement")  # what picks the student's best epoch
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
    hint_weight: float = 0.0  # weight of the sentence-embedding regression term (0 = off)
    hint_components: int = 128  # principal components of the teacher's embeddings the student regresses
    init_embeddings: bool = False  # start the student's token embeddings from the teacher's (Model2Vec-style)
    probe: bool = False  # also a linear probe (frozen backbone + logistic regression) as one more ensemble member
    probe_c: list[float] = field(default_factory=lambda: [1.0, 3.0, 10.0, 30.0])  # its C candidates (val macro-F1)
    probe_backbones: list[str] = field(default_factory=list)  # frozen backbones the probe reads side by side
    # (concatenated embeddings); empty = the teacher's own backbone
    select_on: str = "val"  # val: the student's epoch is chosen on the labelled validation slice (task.monitor);
    # teacher_agreement: on its agreement with the teacher over held-out transfer texts (many rows, no labels)
    agreement_rows: int = 5000  # transfer texts held out (not trained on) for select_on=teacher_agreement
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # noisy variants of the labelled texts added to
    # the transfer set (Tang et al. 2019; text/augment.py); copies: 0 = none

    @classmethod
    def from_config(cls, node: Any) -> "DistillConfig":
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"distill: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        # The augmentation settings are checked here: a typo fails before the teacher fine-tunes.
        config = cls(**{**values, "augment": AugmentConfig.from_dict(values.get("augment"))})
        if config.teacher not in (*TRANSFORMER_TEACHERS, "checkpoint"):
            raise ValueError(f"distill.teacher={config.teacher!r}: use minilm, mpnet, local or checkpoint")
        if config.teacher == "local" and not config.teacher_dir:
            raise ValueError("distill.teacher=local needs distill.teacher_dir (a sentence-transformers folder)")
        if config.teacher == "checkpoint" and not config.teacher_paths:
            raise ValueError("distill.teacher=checkpoint needs distill.teacher_paths (trained model folders)")
        if config.probe and config.teacher == "checkpoint" and not config.probe_backbones:
            raise ValueError("distill.probe with teacher=checkpoint needs distill.probe_backbones (e.g. [minilm]): "
                             "a checkpoint has no transformer backbone to probe")
        unknown_backbones = [b for b in config.probe_backbones if b not in TRANSFORMER_TEACHERS]
        if unknown_backbones:
            raise ValueError(f"distill.probe_backbones: unknown {unknown_backbones}; use {', '.join(TRANSFORMER_TEACHERS)}")
        if "local" in config.probe_backbones and not config.teacher_dir:
            raise ValueError("distill.probe_backbones with local needs distill.teacher_dir (a sentence-transformers folder)")
        if config.teacher != "checkpoint" and not config.seeds and not config.probe:
            raise ValueError("distill.seeds is empty and distill.probe is off: the teacher ensemble has no member")
        if config.probe and (not config.probe_c or min(config.probe_c) <= 0):
            raise ValueError(f"distill.probe_c must list positive C values (got {config.probe_c})")
        if config.select_on not in SELECT_ON:
            raise ValueError(f"distill.select_on={config.select_on!r}: use one of {', '.join(SELECT_ON)}")
        if config.agreement_rows < 1:
            raise ValueError(f"distill.agreement_rows must be >= 1 (got {config.agreement_rows})")
        if config.loss not in DISTILL_LOSSES:
            raise ValueError(f"distill.loss={config.loss!r}: use one of {', '.join(DISTILL_LOSSES)}")
        if config.hint_weight < 0 or config.hint_components < 1:
            raise ValueError(f"distill.hint_weight must be >= 0 and hint_components >= 1 (got {config.hint_weight}, "
                             f"{config.hint_components})")
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
    from nlp_suite.training.loop import resolve_device

    device = str(resolve_device(config.teacher_device))
    if config.teacher == "checkpoint":
        teachers: list[Any] = [CheckpointTeacher(path, labels) for path in config.teacher_paths]
        return teachers + ([build_probe(config, labels, data, device, progress)] if config.probe else [])
    why = backbone_available(config.teacher, config.teacher_dir)
    if why:  # before hashing a local folder's weights: say what is missing, not which file failed to open
        raise RuntimeError(f"the {config.teacher} teacher backbone is unavailable: {why}")
    backbone = backbone_identity(config.teacher, config.teacher_dir)
    teachers = []
    for seed in config.seeds:
        settings = TransformerTeacherConfig(**{"progress": progress, **config.teacher_train, "seed": int(seed)})
        teacher = TransformerTeacher(labels, settings, device, config.teacher, config.cache_dir, config.teacher_dir)
        # "auto" precision is resolved first: a bf16 teacher and an fp32 one are different teachers.
        resolved = str(teacher.amp_dtype or torch.float32)
        identity = fingerprint(backbone, labels, {**{k: v for k, v in vars(settings).items() if k != "progress"},
                                                  "precision": resolved},
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
    if config.probe:
        teachers.append(build_probe(config, labels, data, device, progress))
    return teachers


def backbone_identity(name: str, teacher_dir: str | None) -> str:
    """What a backbone's outputs depend on: its name, or for a local folder the sha256 of its weights."""
    return name if name != "local" else f"local:{sha256_file(Path(str(teacher_dir)) / 'model.safetensors')}"


def build_probe(config: DistillConfig, labels: list[str], data: dict[str, Any], device: str,
                progress: bool) -> ProbeTeacher:
    """The linear-probe member: fit on the frozen backbones' embeddings of the train split, or loaded from cache."""
    names = config.probe_backbones or [config.teacher]
    for name in names:
        why = backbone_available(name, config.teacher_dir)
        if why:
            raise RuntimeError(f"the {name} probe backbone is unavailable: {why}")
    max_len = int(config.teacher_train.get("max_len", TransformerTeacherConfig.max_len))
    embedders = [frozen_embedder(name, device, config.cache_dir, config.teacher_dir, max_len, progress)
                 for name in names]

    def embed(texts: Any) -> np.ndarray:
        return np.concatenate([embedder(texts) for embedder in embedders], axis=1)  # (N, sum of widths)

    probe = ProbeTeacher(labels, embed, config.probe_c,
                         description=f"{' + '.join(names)} frozen + logistic regression")
    identity = fingerprint("probe", [backbone_identity(n, config.teacher_dir) for n in names], labels, probe.c_grid,
                           max_len, list(data["train"][0]), list(data["train"][1]), list(data["val"][0]),
                           list(data["val"][1]))
    folder = Path(config.cache_dir) / f"probe-{'-'.join(names)}-{identity[:16]}"
    if probe.load(folder, identity):
        log.info("probe teacher: loaded from %s", folder)
    else:
        log.info("probe teacher: logistic regression on frozen %s embeddings of %d labelled texts", " + ".join(names),
                 len(data["train"][0]))
        probe.fit(data["train"], data["val"])
        probe.save(folder, identity)
    probe.identity = identity
    return probe


def label_texts(teachers: list[Any], texts: list[str], cache_dir: Path, embeddings: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Ensemble log-probabilities of `texts` and, with `embeddings`, the members' sentence embeddings side by side
    (N, sum of widths; float16); cached per (teachers, texts). A cached labelling without embeddings is redone when
    they are asked for."""
    members = [teacher.identity for teacher in teachers]
    key = fingerprint(members, texts)[:24]
    path = cache_dir / f"labels-{key}.safetensors"
    if path.exists():
        cached = load_file(str(path))
        if not embeddings or "embeddings" in cached:
            log.info("teacher labels of %d texts loaded from %s", len(texts), path)
            return cached["log_probs"], cached.get("embeddings") if embeddings else None
        log.info("cached labels in %s have no sentence embeddings: labelling again", path)
    if embeddings:
        parts = [teacher.encode(texts) for teacher in teachers]
        out, pooled = ensemble_log_probs([p[0] for p in parts]), np.concatenate([p[1] for p in parts], axis=1)
    else:
        out, pooled = ensemble_log_probs([teacher.log_probs(texts) for teacher in teachers]), None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"log_probs": out} if pooled is None else {"log_probs": out, "embeddings": pooled}
    staging = path.with_suffix(".tmp")  # a crash mid-write never leaves a truncated cache entry behind
    save_file(tensors, str(staging), metadata={"members": json.dumps(members), "texts": str(len(texts))})
    staging.replace(path)
    return out, pooled


def hint_targets(embeddings: np.ndarray, components: int) -> np.ndarray:
    """(N, k) float32: the rows' coordinates on the top-k principal axes, scaled so their mean variance is 1."""
    values = embeddings.astype(np.float32)
    values -= values.mean(axis=0, keepdims=True)
    covariance = values.T @ values / max(len(values) - 1, 1)  # (W, W): cheap for W <= a few thousand
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    k = min(components, values.shape[1])
    top = eigenvectors[:, ::-1][:, :k]  # (W, k)
    scale = float(np.sqrt(max(eigenvalues[::-1][:k].mean(), 1e-12)))
    return (values @ top / scale).astype(np.float32)


def token_surfaces(tokenizer: Any) -> list[str]:
    """Each vocabulary id's text as a word a teacher can read: the word-start mark removed, special tokens empty."""
    from nlp_suite.text.tokenizer import SPECIAL_TOKENS

    tokens = [tokenizer.tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    return ["" if token in SPECIAL_TOKENS else token.replace("\u2581", " ").strip() for token in tokens]


def initialise_embeddings(encoder: Any, tokenizer: Any, teachers: list[Any]) -> dict[str, Any]:
    """Overwrite the encoder's token embeddings with the teachers' vectors of each token (top principal
    components, mean variance 1 like the default init); special and empty tokens keep their rows."""
    surfaces = token_surfaces(tokenizer)
    rows = [i for i, surface in enumerate(surfaces) if surface]
    if len(rows) < 2:
        return {"initialised_rows": 0}
    vectors = np.concatenate([teacher.encode([surfaces[i] for i in rows])[1] for teacher in teachers], axis=1)
    width = encoder.embedding.weight.size(1)
    projected = torch.from_numpy(hint_targets(vectors, width))  # (V', <= E)
    with torch.no_grad():
        weight = encoder.embedding.weight
        weight[torch.tensor(rows), : projected.size(1)] = projected.to(weight.dtype)  # extra columns stay random
    log.info("student embeddings: %d of %d rows from the teacher (%d components)", len(rows), len(surfaces),
             projected.size(1))
    return {"initialised_rows": len(rows), "components": int(projected.size(1))}


def attach(task: Any, data: dict[str, Any], cfg: DictConfig) -> tuple[dict[str, Any], list[Any]]:
    """Add the teacher's soft targets to `data['train']` (labelled rows + transfer rows); returns a report and the
    teachers (for `initialise_embeddings` once the student's tokenizer exists)."""
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
    augmented = augment_texts(train_texts, config.augment, int(cfg.seed), exclude=evaluation | set(transfer))
    if augmented:
        counts["augmented_train_variants"] = len(augmented)
        log.info("augmentation: %d variants of %d labelled texts added to the transfer set", len(augmented),
                 len(train_texts))
    transfer = transfer + augmented
    teachers = build_teachers(config, labels, data, progress=bool(cfg.train.get("progress", True)))
    teacher_seconds = time.perf_counter() - start
    ensemble_val = ensemble_scores(teachers, labels, data["val"]) if len(teachers) > 1 else None
    # Reported only, like the student's test metrics (train.py), never used for selection: it says whether the
    # student or its teacher is the limit on the test split.
    teacher_test = ensemble_scores(teachers, labels, data["test"], "test") if data.get("test") else None
    soft, embeddings = label_texts(teachers, train_texts + transfer, Path(config.cache_dir),
                                   embeddings=config.hint_weight > 0)
    data["train"] = (train_texts + transfer, train_labels + [None] * len(transfer), soft)
    task.distillation = (config.alpha, config.temperature, config.loss)
    if embeddings is not None:
        hints = hint_targets(embeddings, config.hint_components)
        data["train"] = (*data["train"], hints)
        task.hint = (config.hint_weight, hints.shape[1])
    held_out = hold_out_agreement(task, data, labels, len(train_texts), config, int(cfg.seed))
    report = {"teacher": config.teacher, "members": len(teachers), "alpha": config.alpha, "loss": config.loss,
              "hint_weight": config.hint_weight,
              "hint_components": task.hint[1] if embeddings is not None else 0,
              "temperature": config.temperature, "labelled_rows": len(train_texts), "transfer_rows": len(transfer),
              "transfer_sources": counts, "teacher_reports": [getattr(t, "report", {}) for t in teachers],
              "teacher_train_agreement": float(np.mean(
                  [labels[i] == y for i, y in zip(soft[: len(train_texts)].argmax(axis=1), train_labels)])),
              "seconds": round(time.perf_counter() - start, 1), "teacher_seconds": round(teacher_seconds, 1),
              **({"ensemble_val": ensemble_val} if ensemble_val else {}),
              **({"teacher_test": teacher_test} if teacher_test else {}),
              "select_on": config.select_on, **({"agreement_rows": held_out} if held_out else {})}
    log.info("distillation: %d labelled + %d transfer rows, %d teacher(s), %.0f s", len(train_texts), len(transfer),
             len(teachers), report["seconds"])
    return report, teachers


def hold_out_agreement(task: Any, data: dict[str, Any], labels: list[str], labelled: int, config: DistillConfig,
                       seed: int) -> int:
    """With select_on=teacher_agreement, move a seeded sample of the transfer rows out of `data['train']` into
    `data['agreement']`, labelled with the teacher's top class; returns how many (0 with select_on=val).

    The labelled validation slice can be tiny (181 rows on FPB AllAgree, where one row is 0.55 points); agreement
    with the teacher on thousands of unseen texts says more reliably which epoch learned the teacher's function.
    """
    if config.select_on != "teacher_agreement":
        return 0
    texts, gold, soft, *rest = data["train"]
    soft = np.asarray(soft)  # (N, C)
    transfer = len(texts) - labelled
    if transfer < 2:
        raise ValueError("distill.select_on=teacher_agreement needs transfer texts to hold out (distill.transfer or "
                         f"distill.augment.copies); this run has {transfer}")
    count = min(config.agreement_rows, transfer // 2)  # never more than half: the student still learns from most
    chosen = np.sort(labelled + np.random.default_rng(seed).permutation(transfer)[:count])
    keep = np.setdiff1d(np.arange(len(texts)), chosen)
    data["agreement"] = ([texts[i] for i in chosen], [labels[i] for i in soft[chosen].argmax(axis=1)])
    data["train"] = ([texts[i] for i in keep], [gold[i] for i in keep], soft[keep],
                     *(np.asarray(r)[keep] for r in rest))
    task.select_on = "teacher_agreement"
    log.info("student epochs chosen on agreement with the teacher over %d held-out transfer texts", count)
    return count


def ensemble_scores(teachers: list[Any], labels: list[str], part: tuple[Any, ...], split: str = "validation"
                    ) -> dict[str, float] | None:
    """Accuracy and macro-F1 of the members' averaged log-probabilities on a split (on validation: what the student
    is taught, scored where each member was scored). Rows whose label the task lacks (e.g. CLINC150's oos rows
    when oos is not a class) are left out and counted."""
    from nlp_suite.tasks.classification import classification_metrics

    index = {label: i for i, label in enumerate(labels)}
    rows = [(text, index[gold]) for text, gold in zip(part[0], part[1]) if gold in index]
    if not rows:
        return None
    predicted = ensemble_log_probs([teacher.log_probs([t for t, _ in rows]) for teacher in teachers]).argmax(axis=1)
    found = {**classification_metrics(np.array([y for _, y in rows]), predicted), "rows": len(rows),
             "rows_left_out": len(part[0]) - len(rows)}
    log.info("teacher ensemble of %d on %s: %s", len(teachers), split, found)
    return found


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
            f"{report['alpha']}, T {report['temperature']}"
            + (f"; hint weight {report['hint_weight']} on {report['hint_components']} components"
               if report.get("hint_components") else "")
            + (f"; ensemble val acc {report['ensemble_val']['accuracy']:.3f} / macro-F1 "
               f"{report['ensemble_val']['macro_f1']:.3f}" if report.get("ensemble_val") else "")
            + (f"; teacher(s) on test (reported only) acc {report['teacher_test']['accuracy']:.3f} / macro-F1 "
               f"{report['teacher_test']['macro_f1']:.3f}" if report.get("teacher_test") else "")
            + f"; teacher + labelling {report['seconds']:.0f} s")
