"""Which words drove a prediction: leave-one-word-out occlusion, for any model with `predict_proba`.

Occlusion works with every pooling (concat pooling has no attention weights) and measures exactly what an
analyst asks: how much less negative would the model find this headline without this word?
"""
from __future__ import annotations

import re

import numpy as np

from nlp_suite.monitoring.scoring import Predictor

_WORD = re.compile(r"\S+")


def word_importance(predictor: Predictor, text: str, label: str, top: int = 5) -> list[dict[str, float | str]]:
    """Up to `top` words whose removal lowers P(label) the most, with that drop (only words that raise it)."""
    words = _WORD.findall(text)
    if not words or label not in predictor.labels:
        return []
    column = predictor.labels.index(label)
    variants = [text] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    probabilities = np.asarray(predictor.predict_proba(variants))[:, column]  # (1 + W,) one batch
    drops = probabilities[0] - probabilities[1:]  # (W,) how much each word adds to P(label)
    order = np.argsort(-drops, kind="stable")[:top]
    return [{"word": words[i].strip(".,;:!?\"'()"), "weight": round(float(drops[i]), 4)}
            for i in order if drops[i] > 0]
