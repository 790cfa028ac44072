"""Financial sentiment (negative / neutral / positive) of a headline or post."""
from __future__ import annotations

from typing import Any

import pandas as pd
from omegaconf import DictConfig

from nlp_suite.paths import resolve
from nlp_suite.tasks.classification import TextClassificationTask


class SentimentTask(TextClassificationTask):
    """3-class sentiment head on the shared encoder: `data.sentiment.path` (labelled CSV) or `.dataset` (a real set)."""

    def load_data(self, cfg: DictConfig) -> dict[str, Any]:
        spec = cfg.data.sentiment
        if spec.get("dataset"):
            return self.dataset_data(spec.dataset, cfg)
        path = resolve(spec.path)
        if not path.exists():
            raise FileNotFoundError(f"sentiment training data not found: {path} (data.sentiment.path)")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = {spec.text_column, spec.label_column} - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; has {list(frame.columns)}")
        frame = frame[(frame[spec.text_column].str.strip() != "") & (frame[spec.label_column] != "")]
        texts = frame[spec.text_column].tolist()
        labels = frame[spec.label_column].str.lower().tolist()
        return self.labelled_data(texts, labels, cfg.train.val_fraction, cfg.seed)
