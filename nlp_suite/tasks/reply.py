"""Customer-service replies: an intent head whose prediction selects the intent's answer template."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from nlp_suite.paths import resolve
from nlp_suite.tasks.classification import TextClassificationTask


def read_faq(path) -> list[dict[str, Any]]:
    """Intents of a FAQ JSONL file: one {"intent", "answer", "questions": [...]} per line."""
    path = resolve(path)
    if not path.exists():
        raise FileNotFoundError(f"FAQ knowledge base not found: {path} (data.faq)")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        missing = {"intent", "answer", "questions"} - set(entry) if isinstance(entry, dict) else {"an object"}
        if missing:
            raise ValueError(f"{path}:{number}: missing {sorted(missing)}")
        entries.append(entry)
    return entries


OOS_LABEL = "oos"  # CLINC150's out-of-scope class: the right reply to it is the fallback
THRESHOLD_GRID = tuple(round(0.3 + 0.05 * i, 2) for i in range(13))  # 0.30 .. 0.90
GAP_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
# What each outcome is worth: a wrong answer costs more than an honest fallback; a clarifying question that offers
# the right intent is half an answer.
UTILITY = {"right": 1.0, "wrong": -1.0, "clarify_right": 0.5, "clarify_wrong": -0.5, "fallback": 0.0}


def reply_utility(probabilities: np.ndarray, truth: np.ndarray, threshold: float, gap: float,
                  oos: int | None = None) -> float:
    """Mean utility of the service's rules on (N, C) probabilities: in-scope rows by `UTILITY`, plus (when the
    labels have an oos class) the oos rows' fallback rate minus their non-fallback rate."""
    order = np.argsort(-probabilities, axis=1)
    top, second = order[:, 0], order[:, 1] if probabilities.shape[1] > 1 else order[:, 0]
    p1 = probabilities[np.arange(len(truth)), top]
    p2 = probabilities[np.arange(len(truth)), second] if probabilities.shape[1] > 1 else np.zeros(len(truth))
    fallback = (p1 < threshold) | (top == oos if oos is not None else False)
    clarify = ~fallback & (p1 - p2 < gap)
    answer = ~fallback & ~clarify
    in_top2 = (top == truth) | (second == truth)
    value = np.where(answer, np.where(top == truth, UTILITY["right"], UTILITY["wrong"]), 0.0)
    value += np.where(clarify, np.where(in_top2, UTILITY["clarify_right"], UTILITY["clarify_wrong"]), 0.0)
    if oos is None or not (truth == oos).any():
        return float(value.mean())
    out_of_scope = truth == oos
    inside = float(value[~out_of_scope].mean()) if (~out_of_scope).any() else 0.0
    return inside + float(np.where(fallback[out_of_scope], 1.0, -1.0).mean())


def tune_thresholds(probabilities: np.ndarray, truth: np.ndarray, default_threshold: float, default_gap: float,
                    oos: int | None = None) -> dict[str, float]:
    """Confidence threshold and top-2 gap with the best `reply_utility`; ties go to the values closest to the
    configured ones (a tiny validation split often cannot tell them apart)."""
    best = max(((reply_utility(probabilities, truth, t, g, oos), -abs(t - default_threshold) - abs(g - default_gap),
                 t, g) for t in THRESHOLD_GRID for g in GAP_GRID))
    return {"confidence_threshold": best[2], "ambiguity_gap": best[3], "val_utility": round(best[0], 4),
            "val_rows": int(len(truth))}


class ReplyTask(TextClassificationTask):
    """Intent classification over the FAQ questions (`data.faq`); thresholds of the chat rules tuned on val."""

    def __init__(self, confidence_threshold: float = 0.5, ambiguity_gap: float = 0.1, tune: bool = True,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.confidence_threshold = confidence_threshold  # below it the chat service does not trust the intent
        self.ambiguity_gap = ambiguity_gap  # top-2 closer than this: clarifying question
        self.tune = tune
        self.tuned: dict[str, float] = {}  # chosen on validation with the best epoch's model
        self._candidate: dict[str, float] = {}  # chosen at the latest validation; kept if the loop keeps that epoch

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics; on val also tunes the thresholds, which `on_new_best` keeps when the loop keeps this epoch."""
        metrics = super().evaluate(model, split)
        if split == "val" and self.tune:
            probabilities, truth = self.probabilities(model, split)
            oos = self.labels.index(OOS_LABEL) if OOS_LABEL in self.labels else None
            self._candidate = tune_thresholds(probabilities, truth, self.confidence_threshold, self.ambiguity_gap,
                                              oos)
        return metrics

    def on_new_best(self) -> None:
        # The loop decides which epoch is best (in multi-task training by the mean over sub-tasks, not this task's
        # own metric), so the thresholds follow its decision rather than this task's metric.
        if self._candidate:
            self.tuned = self._candidate

    def probabilities(self, model: nn.Module, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) probabilities and (N,) label indexes of a prepared split, in split order."""
        model.eval()
        device = next(model.parameters()).device
        data = self.splits[split]
        out = np.zeros((len(data["ids"]), len(self.labels)), dtype=np.float64)
        for batch in self.batches(split, 256, shuffle=False):
            logits = model(batch["ids"].to(device), batch["lengths"].to(device))
            out[batch["index"].numpy()] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return out, data["targets"].numpy()

    def load_data(self, cfg: DictConfig) -> dict[str, Any]:
        """FAQ questions (`data.faq`), or a real intent dataset when `data.intents` names one (e.g. banking77)."""
        if cfg.data.get("intents"):
            return self.dataset_data(cfg.data.intents, cfg)
        texts, labels = [], []
        for entry in read_faq(cfg.data.faq):
            texts.extend(entry["questions"])
            labels.extend([entry["intent"]] * len(entry["questions"]))
        return self.labelled_data(texts, labels, cfg.train.val_fraction, cfg.seed)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "confidence_threshold": self.confidence_threshold, "tuned": self.tuned}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.confidence_threshold = float(state.get("confidence_threshold", self.confidence_threshold))
        self.tuned = dict(state.get("tuned") or {})
