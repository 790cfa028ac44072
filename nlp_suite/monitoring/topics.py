"""Coarse topic of a financial text by a documented keyword-rule baseline (earnings, markets, macro, ...).

Why rules and not a model head: no labelled topic data ships with the suite, and a transparent rule list is
what an analyst can audit and extend from config (`topics.rules`). Each rule is a list of words or phrases,
matched case-insensitively as whole words; a trailing `*` matches any ending ("acqui*" matches "acquires",
"Acquisition"). The topic with the most matching keywords wins; ties go to the topic listed first; no match
at all gives `fallback`.
Every document gets exactly one topic, stored like a watched entity (`document_entities`, kind "topic"), so
alerts, views and dashboards treat topics and companies alike.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

TOPIC_KIND = "topic"


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive regex for a keyword; words of a phrase may be split by any whitespace."""
    prefix = keyword.endswith("*")
    words = keyword.rstrip("*").split()
    body = r"\s+".join(map(re.escape, words))
    # Lookarounds instead of \b so keywords that start or end with punctuation ("s&p", "m&a") still anchor.
    return re.compile(r"(?<![^\W_])" + body + (r"" if prefix else r"(?![^\W_])"), re.IGNORECASE)


class TopicRules:
    """Keyword rules per topic; `classify(text)` returns one topic name."""

    def __init__(self, rules: Mapping[str, Sequence[str]], fallback: str = "Other") -> None:
        if not rules:
            raise ValueError("topic rules are empty; give at least one topic with keywords")
        self.fallback = fallback
        self._patterns: list[tuple[str, list[re.Pattern[str]]]] = []
        for topic, keywords in rules.items():
            if not str(topic).strip():
                raise ValueError("topic names must not be blank")
            cleaned = [str(keyword).strip() for keyword in keywords if str(keyword).strip().rstrip("*")]
            if not cleaned:
                raise ValueError(f"topic {topic!r} has no keywords")
            self._patterns.append((str(topic), [keyword_pattern(keyword) for keyword in cleaned]))

    @property
    def topics(self) -> list[str]:
        """Every topic this classifier can return, the fallback last."""
        return [topic for topic, _ in self._patterns] + [self.fallback]

    def scores(self, text: str) -> dict[str, int]:
        """Number of distinct matching keywords per topic."""
        return {topic: sum(1 for pattern in patterns if pattern.search(text)) for topic, patterns in self._patterns}

    def classify(self, text: str) -> str:
        """The topic with most matching keywords (first listed on ties), or the fallback."""
        best, best_hits = self.fallback, 0
        for topic, hits in self.scores(text).items():
            if hits > best_hits:
                best, best_hits = topic, hits
        return best


def topic_rules_from_config(section: Mapping | None) -> TopicRules | None:
    """TopicRules from the `topics` config section, or None when it is absent or disabled."""
    if not section or not section.get("enabled", True):
        return None
    rules = {str(topic): list(keywords) for topic, keywords in dict(section["rules"]).items()}
    return TopicRules(rules, fallback=str(section.get("fallback", "Other")))
