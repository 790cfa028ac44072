"""Customer-service replies: an intent head whose prediction selects the intent's answer template."""
from __future__ import annotations

import json
from typing import Any

from omegaconf import DictConfig

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


class ReplyTask(TextClassificationTask):
    """Intent classification over the FAQ questions (`data.faq`)."""

    def __init__(self, confidence_threshold: float = 0.5, **kwargs: Any):
        super().__init__(**kwargs)
        self.confidence_threshold = confidence_threshold  # below it the chat service does not trust the intent

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
        return {**super().state(), "confidence_threshold": self.confidence_threshold}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.confidence_threshold = float(state.get("confidence_threshold", self.confidence_threshold))
