"""`train(cfg)`: plain code that trains the configured task end to end and registers the model."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nlp_suite.config import db_url
from nlp_suite.models.encoder import Encoder, EncoderConfig
from nlp_suite.models.ensemble import Ensemble
from nlp_suite.storage.base import utcnow
from nlp_suite.storage.session import session_scope
from nlp_suite.tasks.base import Task
from nlp_suite.text.tokenizer import TextTokenizer
from nlp_suite.training import registry
from nlp_suite.training.checkpoint import load_checkpoint, save_checkpoint
from nlp_suite.training.loop import EpochHook, FitConfig, FitResult, fit
from nlp_suite.training.plots import save_training_curve

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A trained, registered model version and how it got there."""

    task: str
    version_id: int
    name: str
    path: str
    metrics: dict[str, float]
    promoted: bool
    reason: str
    history: list[dict[str, float]] = field(default_factory=list)
    parameters: int = 0
    seconds: float = 0.0
    curve_png: str = ""
    distillation: dict[str, Any] | None = None  # teacher, transfer rows and timings when distill.enabled
    monitor: str = ""  # the task's validation metric (metrics[monitor]; what a hyperparameter search maximises)


def build_task(cfg: DictConfig) -> tuple[Task, dict[str, Any]]:
    """Instantiate the configured task class; also return its params for the checkpoint."""
    params = {k: v for k, v in OmegaConf.to_container(cfg.task, resolve=True).items()
              if k not in ("_target_", "train_overrides")}
    return instantiate({"_target_": cfg.task._target_, **params}, _convert_="all"), params


def fit_config(cfg: DictConfig) -> FitConfig:
    """conf/train with the task's `train_overrides` merged on top."""
    merged = OmegaConf.merge(cfg.train, cfg.task.get("train_overrides") or {})
    return FitConfig.from_config(merged, seed=cfg.seed)


def data_fingerprint(texts: list[str]) -> str:
    """sha256 over the training texts, so a model records what it learned from."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def encoder_config(cfg: DictConfig, vocab_size: int) -> EncoderConfig:
    """EncoderConfig from conf/model, with the tokenizer's real vocabulary size."""
    fields = EncoderConfig.__dataclass_fields__
    values = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k in fields}
    return EncoderConfig(**{**values, "vocab_size": vocab_size})


def pretrained_encoder(cfg: DictConfig) -> tuple[Encoder, TextTokenizer, str] | None:
    """The encoder and tokenizer of `model.pretrained` (a model folder, or 'active' = the active LM), if set."""
    source = cfg.model.get("pretrained")
    if not source:
        return None
    if source == "active":
        with session_scope(db_url(cfg)) as session:
            version, loaded = registry.load_active(session, "lm")
        source = version.path
    else:
        loaded = load_checkpoint(Path(source))
    encoder = loaded.model.encoder
    # The pretrained shape wins, except adapters: they are added on top (identity at first) for this fine-tuning.
    encoder.add_adapters(int(cfg.model.get("adapter_dim") or 0))
    log.info("fine-tuning from pretrained encoder %s (%s)", source, encoder.config)
    return encoder, loaded.tokenizer, str(source)


def ensemble_size(cfg: DictConfig, task: Task) -> int:
    """`train.ensemble`, checked: members are averaged class probabilities, so only classifiers can be ensembled."""
    size = cfg.train.get("ensemble", 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"train.ensemble must be a positive integer (got {size!r})")
    if size > 1 and not task.supports_ensemble:
        raise ValueError(f"train.ensemble={size}: task {task.name!r} ({type(task).__name__}) does not output class "
                         "probabilities to average; use train.ensemble=1 (ensembles are for sentiment and reply)")
    return size


def member_encoders(encoder: Encoder, size: int, seed: int, pretrained: bool, keep_embeddings: bool) -> list[Encoder]:
    """One encoder per ensemble member, all made before any training: the first is `encoder`; the others are copies
    of a pretrained one, or fresh ones initialised from seed + k that share its token embeddings when those came from
    a teacher (distill.init_embeddings), so every member starts from the same knowledge, not the same weights."""
    encoders = [encoder]
    for index in range(1, size):
        if pretrained:
            encoders.append(copy.deepcopy(encoder))
            continue
        torch.manual_seed(seed + index)
        fresh = Encoder(encoder.config)
        if keep_embeddings:
            with torch.no_grad():
                fresh.embedding.weight.copy_(encoder.embedding.weight)
        encoders.append(fresh)
    return encoders


def member_fit_config(fit_cfg: FitConfig, index: int) -> FitConfig:
    """Member k of an ensemble: seed + k (batch order, dropout) and its own resume folder."""
    if index == 0:
        return fit_cfg
    resume = str(Path(fit_cfg.resume_dir) / f"member-{index}") if fit_cfg.resume_dir else None
    return dataclasses.replace(fit_cfg, seed=fit_cfg.seed + index, resume_dir=resume)


def combine_members(task: Task, members: list[nn.Module], results: list[FitResult]
                    ) -> tuple[nn.Module, FitResult, dict[str, Any]]:
    """A single model as it is; several as an Ensemble scored on validation as a whole (what the promotion gate
    compares), with each member's own result kept for the manifest."""
    if len(members) == 1:
        return members[0], results[0], {}
    model = Ensemble(members)
    val = task.evaluate(model, "val")
    task.on_new_best()  # what a task chose on validation (e.g. reply thresholds) now fits the ensemble's probabilities
    history = [{**row, "member": index} for index, result in enumerate(results) for row in result.history]
    combined = FitResult(history=history, best_epoch=results[0].best_epoch, best_metrics=val,
                         seconds=sum(r.seconds for r in results),
                         tokens_per_second=sum(r.tokens_per_second for r in results) / len(results),
                         trainable_share=results[0].trainable_share)
    rows = [{"member": index, "best_epoch": r.best_epoch, "epochs_run": len(r.history), "seconds": round(r.seconds, 2),
             "val": r.best_metrics} for index, r in enumerate(results)]
    log.info("ensemble of %d: val %s (members: %s)", len(members), val,
             ", ".join(f"{task.monitor} {row['val'].get(task.monitor, float('nan')):.4f}" for row in rows))
    return model, combined, {"size": len(members), "members": rows}


def train(cfg: DictConfig, on_epoch_end: EpochHook | None = None) -> TrainResult:
    """Load data, get a tokenizer and encoder (pretrained or new), fit the head, save, register, gate promotion.

    `on_epoch_end` goes to `fit` (called with each epoch's history row, outside the timings).
    """
    torch.manual_seed(cfg.seed)
    task, params = build_task(cfg)
    size = ensemble_size(cfg, task)  # checked before any teacher or data work
    data = task.load_data(cfg)
    distillation, teachers = None, []
    if cfg.get("distill") and cfg.distill.get("enabled"):  # soft targets on labelled + transfer rows
        from nlp_suite.training.distill import attach

        labelled_fingerprint = data_fingerprint(list(data["train"][0]))
        report, teachers = attach(task, data, cfg)
        distillation = {**report, "labelled_fingerprint": labelled_fingerprint}
    corpus = task.corpus(data)
    pretrained = pretrained_encoder(cfg)
    if pretrained:
        encoder, tokenizer, source = pretrained
    else:
        tokenizer = TextTokenizer.train(corpus, cfg.model.vocab_size)
        # Seeded here, not only at the start: fine-tuning a teacher draws from the global generator and a cached
        # one does not, which would otherwise change the student's start.
        torch.manual_seed(cfg.seed)
        encoder, source = Encoder(encoder_config(cfg, tokenizer.vocab_size)), None
        if teachers and cfg.distill.get("init_embeddings"):  # a pretrained encoder keeps its own embeddings
            from nlp_suite.training.distill import initialise_embeddings

            distillation["embedding_init"] = initialise_embeddings(encoder, tokenizer, teachers)
    task.prepare(data, tokenizer, cfg.model.max_len)
    enc_cfg = encoder.config
    fit_cfg = fit_config(cfg)
    if fit_cfg.resume_dir is None and cfg.train.get("resumable"):
        fit_cfg.resume_dir = str(Path(cfg.paths.var) / "resume" / task.name)
    initialised = bool(distillation and (distillation.get("embedding_init") or {}).get("initialised_rows"))
    encoders = member_encoders(encoder, size, int(cfg.seed), pretrained is not None, keep_embeddings=initialised)
    members, results = [], []
    for index, member_encoder in enumerate(encoders):
        model = task.build_model(member_encoder)
        # What is saved and served: training-only modules (e.g. a distillation hint map) are not counted.
        parameters = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary."))
        log.info("training %s%s: %d parameters, %d training texts", task.name,
                 f" (ensemble member {index + 1}/{size})" if size > 1 else "", parameters, len(corpus))
        member_cfg = member_fit_config(fit_cfg, index)
        results.append(fit(model, task, member_cfg, on_epoch_end))
        if hasattr(model, "strip_auxiliary"):
            model.strip_auxiliary()
        members.append(model)
    model, result, ensemble = combine_members(task, members, results)
    parameters = sum(p.numel() for p in model.parameters())

    if "test" in getattr(task, "splits", {}):  # reported only; never used for selection
        test_metrics = {f"test_{k}": v for k, v in task.evaluate(model, "test").items()}
        result.best_metrics = {**result.best_metrics, **test_metrics}
        log.info("%s test: %s", task.name, test_metrics)
        for row, member in zip(ensemble.get("members", []), members):
            row["test"] = task.evaluate(member, "test")
    stamp = utcnow().strftime("%Y%m%d-%H%M%S-%f")
    name = f"{task.name}-{stamp}"
    directory = Path(cfg.paths.models) / task.name / name
    metrics = {**result.best_metrics, "best_epoch": result.best_epoch, "train_seconds": round(result.seconds, 2),
               "tokens_per_second": round(result.tokens_per_second, 1), "parameters": parameters,
               "trainable_share": round(result.trainable_share, 4), **({"ensemble_size": size} if size > 1 else {})}
    if distillation:
        metrics["distill_seconds"] = distillation["seconds"]
    sha = save_checkpoint(directory, model.cpu(), task, params, tokenizer, enc_cfg, cfg.model.max_len, metrics,
                          extra={"history": result.history, "data_fingerprint": data_fingerprint(corpus),
                                 "monitor": task.monitor, "pretrained_from": source,
                                 "distillation": distillation, **({"ensemble": ensemble} if ensemble else {})})
    curve = save_training_curve(result.history, task.monitor, directory / "training_curve.png", title=name)
    with session_scope(db_url(cfg)) as session:
        version = registry.register(session, name=name, task=task.name, path=directory, sha256=sha, metrics=metrics)
        if cfg.train.get("promote", True):
            decision = registry.promote_if_better(session, version, task.monitor,
                                                  cfg.train.get("promotion_margin", 0.0))
        else:  # e.g. hyperparameter-search trials: candidates to compare, never served by accident
            decision = registry.PromotionDecision(False, "registered only: train.promote=false")
        version_id = version.id
    log.info("%s registered as version %d: %s", name, version_id, decision.reason)
    return TrainResult(task=task.name, version_id=version_id, name=name, path=str(directory), metrics=metrics,
                       promoted=decision.promoted, reason=decision.reason, history=result.history,
                       parameters=parameters, seconds=result.seconds, curve_png=str(curve), monitor=task.monitor,
                       distillation=distillation)
