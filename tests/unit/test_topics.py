"""Coarse topic rules and the occlusion explainer used in alert evidence."""
from __future__ import annotations

import numpy as np
import pytest

from nlp_suite.config import load_config
from nlp_suite.monitoring.explain import word_importance
from nlp_suite.monitoring.topics import TopicRules, topic_rules_from_config


@pytest.fixture(scope="module")
def rules() -> TopicRules:
    return topic_rules_from_config(load_config([]).topics)


@pytest.mark.parametrize("text, topic", [
    ("Apple quarterly profit beats forecasts", "Earnings"),
    ("Microsoft agrees to buy Activision in $69bn deal", "M&A"),
    ("Fed raises interest rates as inflation bites", "Macro"),
    ("SEC fines Tesla over tweets", "Regulation"),
    ("Dow and S&P 500 rally on trade hopes", "Markets"),
    ("Cat stuck in tree", "Other"),
])
def test_default_rules_give_the_expected_topic(rules, text, topic):
    assert rules.classify(text) == topic


def test_keywords_match_whole_words_unless_starred():
    rules = TopicRules({"Regulation": ["sec", "regulat*"], "Markets": ["stock*"]})
    assert rules.classify("Second-hand cars") == "Other"  # 'sec' is a whole word, not a prefix
    assert rules.classify("New regulations for banks") == "Regulation"
    assert rules.classify("STOCKS slide; the SEC watches") == "Regulation"  # a tie: the first listed wins
    assert rules.scores("STOCKS slide; the SEC watches") == {"Regulation": 1, "Markets": 1}


def test_ties_go_to_the_first_listed_topic():
    rules = TopicRules({"A": ["alpha"], "B": ["beta"]})
    assert rules.classify("beta and alpha") == "A"
    assert rules.topics == ["A", "B", "Other"]


def test_bad_rules_are_refused_clearly():
    with pytest.raises(ValueError, match="has no keywords"):
        TopicRules({"Empty": ["  ", "*"]})
    with pytest.raises(ValueError, match="empty"):
        TopicRules({})
    assert topic_rules_from_config({"enabled": False, "rules": {"A": ["a"]}}) is None


class KeywordModel:
    """A transparent two-class model: P(negative) grows with the number of words from a list."""

    labels = ["negative", "positive"]

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        logits = np.array([sum(self.weights.get(w.lower(), 0.0) for w in t.split()) for t in texts])
        negative = 1 / (1 + np.exp(-logits))
        return np.stack([negative, 1 - negative], axis=1)


def test_word_importance_ranks_the_words_that_push_the_label():
    model = KeywordModel({"plunge": 2.0, "fraud": 3.0, "record": -1.0})
    words = word_importance(model, "Acme shares plunge on fraud probe, record volume", "negative", top=3)
    assert [w["word"] for w in words] == ["fraud", "plunge"]  # only words that raise P(negative)
    assert words[0]["weight"] > words[1]["weight"] > 0
    assert word_importance(model, "", "negative") == [] and word_importance(model, "x", "neutral") == []
