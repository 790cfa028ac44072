"""Reply selection with an intent prior: the retriever's text match, conditioned on the intent model.

    score(query, passage) = retriever blended score + w * log P(intent(passage) | query)

with P from the reply (intent) model and w >= 0 chosen on validation (`choose_prior_weight`), never on test. Every
knowledge-base answer belongs to an intent, so the classifier's belief about the message tells answers of a likely
intent from text-alike answers of an unlikely one (as Rasa's response selector conditions on the intent). Answers
whose intent the classifier does not know (plain FAQ documents) get a neutral prior: the query's best intent
log-probability, so they neither gain nor lose against the classifier's best guess. w = 0 is the retriever alone.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from nlp_suite.tasks.retrieval import Hit, rank_metrics

# Softmax outputs of a confident model underflow to 0 in float32; the floor keeps log P finite (log 1e-6 = -13.8).
PROBABILITY_FLOOR = 1e-6
PRIOR_GRID = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # fitted blends put candidates a few units apart
RERANK_HITS = 5  # retriever hits the service re-ranks with the prior


def intent_log_prior(probabilities: np.ndarray, labels: Sequence[str], intents: np.ndarray) -> np.ndarray:
    """(N, K) log P(intents[i, k] | query i) from (N, C) classifier probabilities in `labels` order; intents the
    classifier does not know get query i's highest log-probability (neutral)."""
    logs = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR))  # (N, C)
    column = {label: i for i, label in enumerate(labels)}
    found = np.asarray(intents, dtype=object)
    columns = np.array([column.get(intent, -1) for intent in found.ravel()], dtype=np.int64).reshape(found.shape)
    picked = np.take_along_axis(logs, np.maximum(columns, 0), axis=1)  # (N, K); -1 rows replaced below
    return np.where(columns >= 0, picked, logs.max(axis=1, keepdims=True))


def prior_scores(scores: np.ndarray, log_prior: np.ndarray, weight: float) -> np.ndarray:
    """Retriever blended scores + weight * log P(intent(passage) | query); weight 0 returns the scores as they are."""
    if weight < 0:
        raise ValueError(f"the intent prior weight must be >= 0, got {weight}")
    scores = np.asarray(scores, dtype=np.float64)
    return scores.copy() if weight == 0 else scores + weight * np.asarray(log_prior, dtype=np.float64)


def choose_prior_weight(scores: Sequence[np.ndarray], log_priors: Sequence[np.ndarray],
                        grid: Sequence[float] = PRIOR_GRID) -> tuple[float, dict[float, float]]:
    """The grid weight with the best mean MRR over (N, K) candidate sets (true passage in column 0), and the mean MRR
    of every weight; ties go to the smallest weight (the least change to the validated retriever)."""
    if not len(scores):
        return 0.0, {}  # nothing to validate on: keep the retriever alone
    found = {float(w): float(np.mean([rank_metrics(prior_scores(s, p, w))["mrr"] for s, p in zip(scores, log_priors)]))
             for w in sorted(grid)}
    best = max(found.values())
    return next(w for w, mrr in found.items() if mrr >= best - 1e-12), found


def choose_passage(hits: Sequence[Hit], intents: Sequence[str], probabilities: Mapping[str, float], weight: float,
                   threshold: float) -> Hit | None:
    """Among the hits whose blended score reaches `threshold`, the best by blended score + weight * log P(intent);
    None when none reaches it. The threshold applies to the blended score it was validated on, so whether the bot
    answers at all is the retriever's call, and the prior only picks which qualifying passage answers."""
    eligible = [(hit, intent) for hit, intent in zip(hits, intents) if hit.score >= threshold]
    if not eligible or not probabilities or weight == 0:
        return eligible[0][0] if eligible else None  # hits come best first: the retriever's choice
    labels = list(probabilities)
    log_prior = intent_log_prior(np.array([[probabilities[label] for label in labels]]), labels,
                                 np.array([[intent for _, intent in eligible]], dtype=object))[0]
    combined = prior_scores(np.array([hit.score for hit, _ in eligible]), log_prior, weight)
    return eligible[int(np.argmax(combined))][0]  # argmax keeps the retriever's order among equal scores
