"""The embedded sample corpus: deterministic, idempotent, shaped as documented, with the planted burst."""
from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from nlp_suite.data.sample import BURST_DAY, BURST_ENTITY, SampleFiles, write_sample_data
from nlp_suite.monitoring.entities import load_watchlist

COMPANIES = {"Contoso Bank", "Northwind Traders", "Fabrikam", "Tailspin Airlines", "Litware"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleFiles:
    return write_sample_data(tmp_path_factory.mktemp("sample"), seed=0)


@pytest.fixture(scope="module")
def headlines(sample: SampleFiles) -> pd.DataFrame:
    frame = pd.read_csv(sample.headlines, keep_default_na=False)
    watchlist = load_watchlist(sample.watchlist)
    frame["entities"] = frame.text.map(watchlist.match_entities)
    frame["day"] = pd.to_datetime(frame.published_at, utc=True).dt.date
    return frame


def test_same_seed_gives_identical_bytes_and_reruns_are_idempotent(tmp_path: Path, sample: SampleFiles) -> None:
    started = time.perf_counter()
    again = write_sample_data(tmp_path / "again", seed=0)
    assert time.perf_counter() - started < 2.0
    for first, second in zip(sample.all(), again.all()):
        assert first.read_bytes() == second.read_bytes(), first.name
    mtimes = [path.stat().st_mtime_ns for path in again.all()]
    rerun = write_sample_data(tmp_path / "again", seed=0)
    assert rerun == again and [path.stat().st_mtime_ns for path in rerun.all()] == mtimes  # nothing rewritten
    other = write_sample_data(tmp_path / "other", seed=1)
    assert other.headlines.read_bytes() != sample.headlines.read_bytes()


def test_headlines_shape(headlines: pd.DataFrame) -> None:
    assert list(headlines.columns[:4]) == ["id", "published_at", "text", "label"]
    assert 1800 <= len(headlines) <= 2200 and headlines.id.is_unique
    assert headlines.published_at.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert headlines.day.min() == date(2026, 10, 31) - timedelta(days=59) and headlines.day.max() == date(2026, 10, 31)
    mix = headlines.label.value_counts(normalize=True)
    assert set(mix.index) == {"negative", "neutral", "positive"}
    assert 0.15 < mix["negative"] < 0.27 and 0.4 < mix["neutral"] < 0.56 and 0.24 < mix["positive"] < 0.36
    found = headlines.entities.map(len)
    assert set(found) == {0, 1}  # each headline names at most one company
    assert (found == 0).sum() > 200  # general-market headlines
    per_day = headlines.explode("entities").dropna().groupby(["entities", "day"]).size()
    assert set(per_day.index.get_level_values(0)) == COMPANIES
    assert 4 <= per_day.median() <= 6


def test_companies_are_named_by_aliases_too(headlines: pd.DataFrame) -> None:
    contoso = headlines[headlines.entities.map(lambda names: names == ["Contoso Bank"])].text
    assert contoso.str.contains(r"\bCTSO\b").sum() > 20
    assert contoso.str.contains(r"\bContoso\b(?! Bank)").sum() > 20


def test_planted_burst(headlines: pd.DataFrame) -> None:
    company = headlines.explode("entities").dropna(subset=["entities"])
    share = company.groupby(["entities", "day"]).label.agg(lambda labels: (labels == "negative").mean())
    burst = share.loc[(BURST_ENTITY, BURST_DAY)]
    others = share.drop(index=(BURST_ENTITY, BURST_DAY))
    assert burst >= 0.6
    assert 0.12 < share.loc[BURST_ENTITY].drop(BURST_DAY).mean() < 0.28
    assert others.max() < 0.5  # no other company-day looks like a spike
    volume = company[company.entities == BURST_ENTITY].groupby("day").size()
    assert volume[BURST_DAY] >= 15 + 3


def test_watchlist(sample: SampleFiles) -> None:
    data = json.loads(sample.watchlist.read_text(encoding="utf-8"))
    assert {entity["name"] for entity in data["entities"]} == COMPANIES
    assert all(entity["kind"] == "company" and len(entity["aliases"]) == 2 for entity in data["entities"])
    assert load_watchlist(sample.watchlist).match_entities("CTSO slides") == ["Contoso Bank"]


def test_faq_intents_are_varied_and_separable(sample: SampleFiles) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    entries = [json.loads(line) for line in sample.faq.read_text(encoding="utf-8").splitlines()]
    intents = {entry["intent"] for entry in entries}
    assert {"check_balance", "reset_password", "lost_card", "greeting", "human_agent", "dispute_charge"} <= intents
    assert len(entries) == len(intents) == 12
    assert all(len(set(entry["questions"])) >= 35 and entry["answer"] for entry in entries)
    assert sum("{{" in entry["answer"] for entry in entries) >= 5
    assert any("{{Card Last Digits}}" in entry["answer"] for entry in entries)
    # A plain bag-of-words baseline must already tell the intents apart on held-out paraphrases.
    train = [(q, e["intent"]) for e in entries for i, q in enumerate(e["questions"]) if i % 4]
    test = [(q, e["intent"]) for e in entries for i, q in enumerate(e["questions"]) if not i % 4]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2))
    model = LogisticRegression(max_iter=1000).fit(vectorizer.fit_transform([q for q, _ in train]), [y for _, y in train])
    predicted = model.predict(vectorizer.transform([q for q, _ in test]))
    assert (predicted == [y for _, y in test]).mean() > 0.9


def test_items_and_interactions(sample: SampleFiles) -> None:
    items = pd.read_csv(sample.items, keep_default_na=False)
    events = pd.read_csv(sample.interactions)
    assert list(items.columns) == ["id", "title", "description", "tags", "category", "created_at"]
    assert list(events.columns) == ["user_id", "item_id", "event", "value", "occurred_at"]
    assert len(items) == 200 and items.category.nunique() == 8 and items.id.is_unique
    assert items.tags.str.contains(r"\|").all()
    created = pd.to_datetime(items.created_at, utc=True)
    fresh = items[created >= pd.Timestamp("2026-10-27", tz="UTC")]
    assert 5 <= len(fresh) <= 16 and not set(fresh.id) & set(events.item_id)  # cold-start items
    assert events.user_id.nunique() == 120
    per_user = events.groupby("user_id").size()
    assert per_user.min() >= 14 and per_user.max() <= 40
    assert set(events.event) == {"view", "click", "like", "purchase"} and (events.value == 1.0).all()
    when = pd.to_datetime(events.occurred_at, utc=True)
    assert when.min() >= pd.Timestamp("2026-09-02", tz="UTC") and when.max() < pd.Timestamp("2026-11-01", tz="UTC")
    merged = events.merge(items[["id", "category", "created_at"]], left_on="item_id", right_on="id")
    assert len(merged) == len(events)
    assert (pd.to_datetime(merged.created_at, utc=True) <= pd.to_datetime(merged.occurred_at, utc=True)).all()
    top_two = merged.groupby("user_id").category.agg(lambda c: c.value_counts().iloc[:2].sum() / len(c))
    assert top_two.mean() > 0.8  # users stick to their 1-2 preferred categories
