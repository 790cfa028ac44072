"""Text augmentation for distillation transfer sets (Tang et al. 2019, "Distilling Task-Specific Knowledge from
BERT into Simple Neural Networks", section 3.2).

Small labelled sets (Banking77: 9k texts) give the student few texts to learn the teacher's behaviour on. Each
labelled text yields `copies` noisy variants: every word is, independently, deleted (`delete_prob`; Tang et al.
mask it, which our BPE tokenizer has no token for) or replaced by a word drawn from the texts' own unigram
distribution (`replace_prob`; their POS-guided replacement without a POS tagger), and with `ngram_prob` the variant
is cut to a random n-gram of 1..`max_ngram` words. The variants carry no gold label: the teacher labels them, so a
deletion that changes the meaning changes the soft target too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """distill.augment in conf/distill/*.yaml."""

    copies: int = 0  # variants per labelled train text (0 = no augmentation)
    delete_prob: float = 0.1  # per word: drop it
    replace_prob: float = 0.1  # per word: swap in a word drawn from the texts' unigram distribution
    ngram_prob: float = 0.25  # per variant: keep only a random n-gram of it
    max_ngram: int = 5  # n of that n-gram is uniform in 1..max_ngram

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "AugmentConfig":
        """Checked construction: unknown keys and out-of-range probabilities are errors that name the key."""
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"distill.augment: unknown keys {sorted(unknown)}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        config = cls(**values)
        for key in ("delete_prob", "replace_prob", "ngram_prob"):
            if not 0.0 <= getattr(config, key) <= 1.0:
                raise ValueError(f"distill.augment.{key} must be in [0, 1], got {getattr(config, key)}")
        if config.delete_prob + config.replace_prob > 1.0:
            raise ValueError("distill.augment.delete_prob + replace_prob must be <= 1 (both act on each word)")
        if config.copies < 0 or config.max_ngram < 1:
            raise ValueError(f"distill.augment.copies must be >= 0 and max_ngram >= 1 (got {config.copies}, "
                             f"{config.max_ngram})")
        return config


def augment_texts(texts: list[str], config: AugmentConfig, seed: int, exclude: set[str] = frozenset()
                  ) -> list[str]:
    """Up to `copies` distinct variants of each text, in text order (a function of texts, settings and seed);
    the originals, `exclude` and repeats are left out."""
    if config.copies == 0 or not texts:
        return []
    rng = np.random.default_rng(seed)
    sentences = [text.split() for text in texts]
    vocabulary, counts = np.unique(np.array([w for words in sentences for w in words] or [""], dtype=object),
                                   return_counts=True)
    # Cumulative unigram distribution, built once: what rng.choice(p=...) would rebuild on every call (same draws).
    cdf = np.cumsum(counts / counts.sum())
    cdf /= cdf[-1]
    seen = set(texts) | set(exclude)
    out: list[str] = []
    for words in sentences:
        for _ in range(config.copies):
            variant = _vary(words, rng, vocabulary, cdf, config)
            if variant and variant not in seen:
                seen.add(variant)
                out.append(variant)
    return out


def _vary(words: list[str], rng: np.random.Generator, vocabulary: np.ndarray, cdf: np.ndarray,
          config: AugmentConfig) -> str:
    """One variant of a word list: per-word delete / replace, then maybe an n-gram of it."""
    draw = rng.random(len(words))
    replacements = vocabulary[cdf.searchsorted(rng.random(len(words)), side="right")]
    kept = [replacement if d < config.replace_prob else word
            for word, d, replacement in zip(words, draw, replacements)
            if not config.replace_prob <= d < config.replace_prob + config.delete_prob]
    if kept and rng.random() < config.ngram_prob:
        n = int(rng.integers(1, config.max_ngram + 1))
        if n < len(kept):
            start = int(rng.integers(0, len(kept) - n + 1))
            kept = kept[start: start + n]
    return " ".join(kept)
