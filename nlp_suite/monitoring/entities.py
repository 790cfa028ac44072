"""Watchlist of companies/topics and whole-word, case- and punctuation-robust matching of them in text."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class WatchedEntity(BaseModel):
    """One watched entity: canonical name, kind and the other names it goes by in text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128)  # document_entities.entity is String(128)
    kind: str = Field(default="company", min_length=1, max_length=32)
    aliases: tuple[str, ...] = ()

    @field_validator("name", "kind")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by its non-blank aliases."""
        return (self.name, *(alias.strip() for alias in self.aliases if alias.strip()))


def _name_pattern(name: str) -> str:
    """Regex for one name: its word tokens separated by any run of non-word characters."""
    tokens = re.findall(r"[^\W_]+", name)
    return r"[\W_]+".join(re.escape(token) for token in tokens)


def _entity_regex(entity: WatchedEntity) -> re.Pattern[str] | None:
    """One regex for all names of an entity, anchored on word boundaries, longest names first."""
    patterns = sorted({p for p in map(_name_pattern, entity.names) if p}, key=len, reverse=True)
    if not patterns:
        return None
    # Lookarounds instead of \b: 'CTSO' must not match inside 'CTSOX', but "Contoso Bank's" and '$CTSO' should match.
    return re.compile(r"(?<![^\W_])(?:" + "|".join(patterns) + r")(?![^\W_])", re.IGNORECASE)


class Watchlist:
    """The entities the monitoring watches, with a compiled matcher per entity."""

    def __init__(self, entities: Iterable[WatchedEntity]) -> None:
        self.entities: tuple[WatchedEntity, ...] = tuple(entities)
        names = [entity.name for entity in self.entities]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"watchlist names must be unique; repeated: {duplicates}")
        self._kinds = {entity.name: entity.kind for entity in self.entities}
        self._regexes = [(entity.name, _entity_regex(entity)) for entity in self.entities]

    def __len__(self) -> int:
        return len(self.entities)

    def kind_of(self, name: str) -> str:
        """Kind (company, topic, ...) of a canonical entity name."""
        return self._kinds[name]

    def match_entities(self, text: str) -> list[str]:
        """Canonical names of the entities mentioned in `text`, in order of first mention."""
        found: list[tuple[int, str]] = []
        for name, regex in self._regexes:
            match = regex.search(text) if regex is not None else None
            if match is not None:
                found.append((match.start(), name))
        return [name for _, name in sorted(found)]

    @classmethod
    def from_dict(cls, data: object) -> "Watchlist":
        """Build from the JSON structure `{"entities": [{"name", "kind", "aliases"}, ...]}`."""
        if not isinstance(data, dict) or not isinstance(data.get("entities"), list):
            raise ValueError('expected an object {"entities": [...]}')
        return cls(WatchedEntity.model_validate(entry) for entry in data["entities"])


def load_watchlist(path: str | Path) -> Watchlist:
    """Read a watchlist JSON file; raises ValueError naming the file and the problem."""
    path = Path(path)
    try:
        return Watchlist.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as error:
        raise ValueError(f"cannot read watchlist {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError, ValueError) as error:
        raise ValueError(f"invalid watchlist {path}: {error}") from None
