"""Watchlist loading and whole-word, case- and punctuation-robust entity matching."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlp_suite.monitoring.entities import WatchedEntity, Watchlist, load_watchlist

WATCHLIST = {"entities": [
    {"name": "Contoso Bank", "kind": "company", "aliases": ["Contoso", "CTSO"]},
    {"name": "Tailspin Airlines", "kind": "company", "aliases": ["Tailspin", "TSPN"]},
    {"name": "Interest rates", "kind": "topic", "aliases": ["rate hike", "rate cut"]},
]}


@pytest.fixture
def watchlist(tmp_path: Path) -> Watchlist:
    path = tmp_path / "watchlist.json"
    path.write_text(json.dumps(WATCHLIST), encoding="utf-8")
    return load_watchlist(path)


@pytest.mark.parametrize("text, expected", [
    ("Contoso Bank shares plunge", ["Contoso Bank"]),
    ("contoso bank's profit falls", ["Contoso Bank"]),  # case and possessive
    ("CONTOSO-BANK: results due", ["Contoso Bank"]),  # punctuation between the words
    ("Contoso  \n Bank names new CFO", ["Contoso Bank"]),  # any whitespace run
    ("Analysts upgrade CTSO.", ["Contoso Bank"]),
    ("($CTSO) rallies", ["Contoso Bank"]),
    ("CTSOX rallies", []),  # no partial-word matches
    ("Tailspins and Contosos", []),
    ("XCTSO and CTSOs", []),
    ("TSPN and CTSO both fall", ["Tailspin Airlines", "Contoso Bank"]),  # order of first mention
    ("Contoso and Contoso Bank and CTSO", ["Contoso Bank"]),  # one canonical name, once
    ("Markets rally on rate-cut hopes", ["Interest rates"]),
    ("Stocks slide as recession fears grow", []),
])
def test_match_entities(watchlist: Watchlist, text: str, expected: list[str]) -> None:
    assert watchlist.match_entities(text) == expected


def test_kinds_come_from_the_watchlist(watchlist: Watchlist) -> None:
    assert watchlist.kind_of("Contoso Bank") == "company"
    assert watchlist.kind_of("Interest rates") == "topic"
    assert len(watchlist) == 3


def test_entity_defaults() -> None:
    entity = WatchedEntity(name="  Litware ")
    assert (entity.name, entity.kind, entity.names) == ("Litware", "company", ("Litware",))


@pytest.mark.parametrize("content, message", [
    ("not json", "invalid watchlist"),
    ('{"companies": []}', "entities"),
    ('{"entities": [{"kind": "company"}]}', "name"),
    ('{"entities": [{"name": "A"}, {"name": "A"}]}', "unique"),
])
def test_bad_watchlists_raise_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "w.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_watchlist(path)


def test_missing_watchlist_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read watchlist"):
        load_watchlist(tmp_path / "absent.json")
