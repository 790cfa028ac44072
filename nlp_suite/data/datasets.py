"""Labelled text datasets for the benchmark, read in place from ``paths.shared_data``, selected by name.

``load_dataset(name, root)`` reads one of `DATASET_NAMES` into a `LabelledDataset`: named `Split` s of
texts and labels (plus the agent replies for Bitext), the sorted label set and a duplicate `report`.
Readers keep every row, in file order; nothing is dropped at read time. Texts are stripped of surrounding
whitespace (inner whitespace and newlines are kept): Banking77 has texts with leading/trailing newlines that
would otherwise hide 6 exact train/test duplicates. Duplicates are only
counted, and removed where a split is made: `stratified_protocol` (one pool -> train/val/test) and
`dedupe_across` (drop from a test split what train already holds).

Datasets (see each folder's SOURCE.md under ``paths.shared_data``):

* ``fpb_50agree``, ``fpb_66agree``, ``fpb_75agree``, ``fpb_allagree`` - Financial PhraseBank, latin-1 lines
  ``sentence@label`` (label after the last '@'); one split ``all``; labels negative/neutral/positive.
* ``twitter_fin`` - Twitter Financial News Sentiment, ``sent_train.csv``/``sent_valid.csv``; splits
  ``train``, ``valid``; ids 0 Bearish / 1 Bullish / 2 Neutral mapped to negative / positive / neutral,
  the same names as FPB.
* ``banking77`` - ``train.csv``/``test.csv``; splits ``train``, ``test``; 77 intents.
* ``clinc150`` (``data_full.json``) and ``clinc150_oos_plus`` (``data_oos_plus.json``) - splits ``train``,
  ``val`` and, when the file has the keys, ``test``. **Out-of-scope queries are merged into the matching
  split with the label** ``"oos"`` (the "Full" setting of Larson et al. 2019: oos is a 151st class at
  training and evaluation time). `in_scope` drops them again for in-scope-only accuracy. The shared copy
  withholds ``test``/``oos_test``; the original release with those keys reads with the same code.
* ``bitext`` - Bitext customer support; one split ``all``: texts = ``instruction``, labels = ``intent``,
  and ``Split.responses`` = the agent reply of each row (row-aligned; also `LabelledDataset.responses`).

Errors: `DatasetError` (a ValueError) for malformed content, naming the file and line/row; a missing file is
a FileNotFoundError naming the path and the config key ``paths.shared_data``.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

__all__ = [
    "DATASETS", "DATASET_NAMES", "OOS_LABEL", "SENTIMENT_LABELS", "TWITTER_LABELS", "DatasetError", "DedupReport",
    "LabelledDataset", "Split", "audit", "dedupe", "dedupe_across", "in_scope", "load_dataset", "read_banking77",
    "read_bitext", "read_clinc150", "read_financial_phrasebank", "read_twitter_financial", "stratified_protocol",
]

SENTIMENT_LABELS = ("negative", "neutral", "positive")
# Dataset card of zeroshot/twitter-financial-news-sentiment: 0 Bearish, 1 Bullish, 2 Neutral.
TWITTER_LABELS = {"0": "negative", "1": "positive", "2": "neutral"}
OOS_LABEL = "oos"
CONFIG_KEY = "paths.shared_data"


class DatasetError(ValueError):
    """A dataset file has content we cannot use; names the file and, where there is one, the line or row."""

    def __init__(self, path: str | Path, why: str, line: int | None = None, unit: str = "line") -> None:
        where = f"{path}" if line is None else f"{path}, {unit} {line}"
        super().__init__(f"{where}: {why}")
        self.path = Path(path)
        self.line = line
        self.why = why


# --------------------------------------------------------------------------------------------- data model

@dataclass(frozen=True)
class Split:
    """Row-aligned texts and labels; `responses` (Bitext agent replies) aligned with them when present."""

    texts: list[str]
    labels: list[str]
    responses: list[str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", list(self.texts))
        object.__setattr__(self, "labels", list(self.labels))
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        if self.responses is not None:
            object.__setattr__(self, "responses", list(self.responses))
            if len(self.responses) != len(self.texts):
                raise ValueError(f"{len(self.texts)} texts but {len(self.responses)} responses")

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: Iterable[int]) -> Split:
        """The rows at `indices`, in that order."""
        indices = list(indices)
        return Split([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                     None if self.responses is None else [self.responses[i] for i in indices])

    def label_counts(self) -> dict[str, int]:
        """Rows per label, labels sorted."""
        return dict(sorted(Counter(self.labels).items()))


@dataclass(frozen=True)
class DedupReport:
    """Exact-text duplicates found (and possibly removed) in one split or between two splits.

    * `rows`: rows examined (the split; for a pair, the later split).
    * `duplicates`: rows whose exact text occurred before (earlier in the same split; for a pair, in the
      earlier split). Extra copies, so a text seen 3 times counts 2.
    * `conflicts`: the texts carrying more than one label among those copies (sorted).
    * `removed`: rows removed; 0 where the report only audits (`LabelledDataset.report` of a reader).
    """

    rows: int = 0
    duplicates: int = 0
    conflicts: tuple[str, ...] = ()
    removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for benchmark notes."""
        return {"rows": self.rows, "duplicates": self.duplicates, "conflicts": len(self.conflicts),
                "conflicting_texts": list(self.conflicts), "removed": self.removed}


def _within(split: Split) -> DedupReport:
    seen: dict[str, set[str]] = defaultdict(set)
    duplicates = 0
    for text, label in zip(split.texts, split.labels):
        duplicates += text in seen
        seen[text].add(label)
    return DedupReport(len(split), duplicates, tuple(sorted(t for t, labels in seen.items() if len(labels) > 1)))


def _across(reference: Split, other: Split) -> DedupReport:
    labels: dict[str, set[str]] = defaultdict(set)
    for text, label in zip(reference.texts, reference.labels):
        labels[text].add(label)
    duplicates, conflicts = 0, set()
    for text, label in zip(other.texts, other.labels):
        if text in labels:
            duplicates += 1
            if labels[text] != {label}:
                conflicts.add(text)
    return DedupReport(len(other), duplicates, tuple(sorted(conflicts)))


def audit(splits: dict[str, Split]) -> dict[str, DedupReport]:
    """Duplicate counts of every split (key = split name) and of every ordered pair (key ``"a&b"``)."""
    report = {name: _within(split) for name, split in splits.items()}
    names = list(splits)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            report[f"{first}&{second}"] = _across(splits[first], splits[second])
    return report


@dataclass(frozen=True)
class LabelledDataset:
    """Named splits of one dataset plus the duplicate report.

    `report` holds `audit` of the splits (within each split, key = split name; between two splits, key
    ``"train&val"``); entries passed in (e.g. ``"dedup"`` from `stratified_protocol`: what was removed
    before splitting) are kept next to them.
    """

    name: str
    splits: dict[str, Split]
    report: dict[str, DedupReport] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", dict(self.splits))
        object.__setattr__(self, "report", {**audit(self.splits), **self.report})

    @property
    def labels(self) -> list[str]:
        """Sorted label set over all splits."""
        return sorted({label for split in self.splits.values() for label in split.labels})

    @property
    def responses(self) -> list[str]:
        """Agent replies of all rows, split after split ([] for datasets without replies)."""
        return [r for split in self.splits.values() for r in (split.responses or [])]

    def __getitem__(self, split: str) -> Split:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(f"{self.name} has no split {split!r}; it has {sorted(self.splits)}") from None

    def summary(self) -> dict[str, Any]:
        """Row counts, label counts and duplicate report as plain JSON-ready data."""
        return {"name": self.name, "labels": len(self.labels),
                "rows": {name: len(split) for name, split in self.splits.items()},
                "label_counts": {name: split.label_counts() for name, split in self.splits.items()},
                "report": {key: value.as_dict() for key, value in self.report.items()}}


# -------------------------------------------------------------------------------------------------- readers

def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path} (real datasets are read from the config key "
                                f"{CONFIG_KEY}, env NLP_SUITE_SHARED_DATA)")
    return path


def read_financial_phrasebank(path: str | Path, name: str = "financial_phrasebank") -> LabelledDataset:
    """One FPB file (``Sentences_*Agree.txt``): latin-1 lines ``sentence@label`` -> split ``all``.

    The label follows the last '@'. Blank lines are skipped; CRLF (the original zip) and LF both read.
    A line without '@' or with a label outside negative/neutral/positive raises `DatasetError` naming the
    file and the 1-based line number.
    """
    path = _require_file(Path(path))
    texts, labels = [], []
    # Universal newlines only split on \n, \r\n, \r; str.splitlines would also split on latin-1 \x85 etc.
    with path.open(encoding="latin-1", newline=None) as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            sentence, at, label = line.rpartition("@")
            label = label.strip()
            if not at:
                raise DatasetError(path, f"no '@' before a label in {line[:80]!r}", number)
            if label not in SENTIMENT_LABELS:
                raise DatasetError(path, f"unknown label {label!r} (expected one of {', '.join(SENTIMENT_LABELS)})",
                                   number)
            if not sentence.strip():
                raise DatasetError(path, "empty sentence before '@'", number)
            texts.append(sentence.strip())
            labels.append(label)
    if not texts:
        raise DatasetError(path, "no sentences")
    return LabelledDataset(name, {"all": Split(texts, labels)})


def _read_csv(path: Path, columns: Sequence[str], encoding: str = "utf-8-sig") -> pd.DataFrame:
    """A CSV with a header as strings ('' for empty cells; 'NA' stays text), required columns checked."""
    path = _require_file(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
    except UnicodeDecodeError as error:
        raise DatasetError(path, f"not {encoding}: {error}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DatasetError(path, f"malformed CSV: {error}") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DatasetError(path, f"missing column(s) {missing}; header is {list(frame.columns)}")
    return frame


def _column(frame: pd.DataFrame, path: Path, column: str) -> list[str]:
    """A column's cells stripped of surrounding whitespace; an empty cell raises `DatasetError`."""
    values = [value.strip() for value in frame[column].tolist()]
    for row, value in enumerate(values, start=1):
        if not value:
            raise DatasetError(path, f"empty {column!r}", row, unit="data row")
    return values


def read_twitter_financial(folder: str | Path, name: str = "twitter_fin") -> LabelledDataset:
    """``sent_train.csv`` and ``sent_valid.csv`` (``text,label``; quoted multi-line texts) -> ``train``, ``valid``.

    Label ids map through `TWITTER_LABELS` (0 Bearish -> negative, 1 Bullish -> positive, 2 Neutral ->
    neutral). An unknown id raises `DatasetError` naming the file and data row (1-based, header excluded).
    """
    folder = Path(folder)
    splits = {}
    for split, file in (("train", "sent_train.csv"), ("valid", "sent_valid.csv")):
        path = folder / file
        frame = _read_csv(path, ("text", "label"))
        labels = []
        for row, raw in enumerate(frame["label"].tolist(), start=1):
            try:
                labels.append(TWITTER_LABELS[raw.strip()])
            except KeyError:
                raise DatasetError(path, f"unknown label id {raw!r} (expected 0, 1 or 2)", row,
                                   unit="data row") from None
        splits[split] = Split(_column(frame, path, "text"), labels)
    return LabelledDataset(name, splits)


def read_banking77(folder: str | Path, name: str = "banking77") -> LabelledDataset:
    """``train.csv`` and ``test.csv`` (``text,category``) -> ``train``, ``test``.

    When ``categories.json`` is there, a category outside it raises `DatasetError` (file, data row).
    """
    folder = Path(folder)
    known = None
    if (folder / "categories.json").is_file():
        known = set(json.loads((folder / "categories.json").read_text(encoding="utf-8")))
    splits = {}
    for split in ("train", "test"):
        path = folder / f"{split}.csv"
        frame = _read_csv(path, ("text", "category"))
        labels = _column(frame, path, "category")
        if known is not None:
            for row, label in enumerate(labels, start=1):
                if label not in known:
                    raise DatasetError(path, f"category {label!r} is not in categories.json", row, unit="data row")
        splits[split] = Split(_column(frame, path, "text"), labels)
    return LabelledDataset(name, splits)


CLINC_SPLITS = ("train", "val", "test")


def read_clinc150(path: str | Path, name: str = "clinc150") -> LabelledDataset:
    """CLINC150 ``data_full.json`` (or ``data_oos_plus.json``) -> ``train``, ``val`` [, ``test``].

    Reads whichever of ``train, val, test, oos_train, oos_val, oos_test`` exist (the shared copy withholds
    the two test keys). Each ``oos_<split>`` list is appended to ``<split>`` with label ``"oos"``: in-scope
    rows first, then out-of-scope rows. `in_scope` recovers the in-scope rows. Other keys are ignored.
    """
    path = _require_file(Path(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(path, f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise DatasetError(path, f"expected a JSON object with keys {CLINC_SPLITS}, got {type(data).__name__}")
    splits: dict[str, Split] = {}
    for split in CLINC_SPLITS:
        texts, labels = [], []
        for key in (split, f"oos_{split}"):
            for index, pair in enumerate(data.get(key, [])):
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
                        and pair[0].strip()):
                    raise DatasetError(path, f"{key}[{index}] is not a [text, intent] pair of strings: {pair!r}")
                if key.startswith("oos_") and pair[1] != OOS_LABEL:
                    raise DatasetError(path, f"{key}[{index}] has intent {pair[1]!r}, expected {OOS_LABEL!r}")
                texts.append(pair[0].strip())
                labels.append(pair[1].strip())
        if split in data or f"oos_{split}" in data:
            splits[split] = Split(texts, labels)
    if not splits:
        raise DatasetError(path, f"none of the keys {CLINC_SPLITS} (or oos_*) found; keys are {sorted(data)}")
    return LabelledDataset(name, splits)


def in_scope(split: Split) -> Split:
    """The rows whose label is not ``"oos"`` (CLINC150 in-scope accuracy)."""
    return split.select(i for i, label in enumerate(split.labels) if label != OOS_LABEL)


BITEXT_COLUMNS = ("instruction", "intent", "category", "response")


def read_bitext(path: str | Path, name: str = "bitext") -> LabelledDataset:
    """Bitext customer-support CSV -> split ``all``: texts = instruction, labels = intent, responses = response."""
    path = Path(path)
    frame = _read_csv(path, BITEXT_COLUMNS)
    return LabelledDataset(name, {"all": Split(_column(frame, path, "instruction"), _column(frame, path, "intent"),
                                               _column(frame, path, "response"))})


# ----------------------------------------------------------------------------------------- de-duplication

OnConflict = Literal["drop", "first"]


def dedupe(split: Split, on_conflict: OnConflict = "drop") -> tuple[Split, DedupReport]:
    """`split` with each exact text once (first occurrence kept, order kept), and what was removed.

    Texts whose copies carry different labels are dropped altogether with ``on_conflict="drop"`` (their
    label is ambiguous), or keep their first copy's label with ``"first"``.
    """
    if on_conflict not in ("drop", "first"):
        raise ValueError(f"on_conflict must be 'drop' or 'first', not {on_conflict!r}")
    found = _within(split)
    banned = set(found.conflicts) if on_conflict == "drop" else set()
    seen: set[str] = set()
    keep = []
    for i, text in enumerate(split.texts):
        if text not in seen and text not in banned:
            keep.append(i)
        seen.add(text)
    return split.select(keep), replace(found, removed=len(split) - len(keep))


def dedupe_across(train: Split, test: Split) -> tuple[Split, DedupReport]:
    """`test` without the rows whose exact text is in `train`, and a report of them.

    ``duplicates == removed`` counts the removed test rows; ``conflicts`` lists the texts whose test label
    differs from (one of) their train labels.
    """
    found = _across(train, test)
    known = set(train.texts)
    kept = test.select(i for i, text in enumerate(test.texts) if text not in known)
    return kept, replace(found, removed=len(test) - len(kept))


# ------------------------------------------------------------------------------------------------ protocol

def _stratified(split: Split, fraction: float, seed: int, what: str) -> tuple[Split, Split]:
    """(rest, held_out) with `fraction` of each label held out (sklearn, `seed`)."""
    from sklearn.model_selection import train_test_split

    counts = Counter(split.labels)
    rare = sorted(label for label, count in counts.items() if count < 2)
    if rare:
        raise ValueError(f"cannot stratify the {what} split: label(s) with fewer than 2 rows: {rare}")
    rest, held = train_test_split(list(range(len(split))), test_size=fraction, random_state=seed,
                                  shuffle=True, stratify=split.labels)
    return split.select(rest), split.select(held)


def stratified_protocol(dataset_split: Split | LabelledDataset, seed: int = 0, test_fraction: float = 0.2,
                        val_fraction: float = 0.1, on_conflict: OnConflict = "drop",
                        name: str | None = None) -> LabelledDataset:
    """Train/val/test of one pool by the FinBERT/ULMFiT protocol of our benchmark.

    1. `dedupe` the pool (exact texts; conflicting-label texts dropped by default), so no text can end up
       in both train and test;
    2. stratified `test_fraction` (20 %) test split with `seed`;
    3. stratified `val_fraction` (10 %) of the remaining train as validation, same `seed`.

    Sizes follow sklearn: test = ceil(test_fraction * n), val = ceil(val_fraction * (n - test)).
    `val_fraction=0` gives an empty ``val``. Returns splits ``train``, ``val``, ``test``; ``report["dedup"]``
    says what step 1 removed (the pair entries of the report are then all zero).
    """
    if isinstance(dataset_split, LabelledDataset):
        if len(dataset_split.splits) != 1:
            raise ValueError(f"{dataset_split.name} has splits {sorted(dataset_split.splits)}; pass one Split")
        name = name or dataset_split.name
        dataset_split = next(iter(dataset_split.splits.values()))
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), not {test_fraction}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    pool, removed = dedupe(dataset_split, on_conflict)
    train, test = _stratified(pool, test_fraction, seed, "test")
    if val_fraction > 0:
        train, val = _stratified(train, val_fraction, seed, "validation")
    else:
        val = train.select([])
    return LabelledDataset(name or "protocol", {"train": train, "val": val, "test": test}, {"dedup": removed})


# ------------------------------------------------------------------------------------------------ registry

@dataclass(frozen=True)
class _Entry:
    relative: str  # file or folder under paths.shared_data
    reader: Callable[..., LabelledDataset]
    needs: tuple[str, ...] = ()  # files inside a folder entry


_FPB = "financial_phrasebank/Sentences_{}Agree.txt"
DATASETS: dict[str, _Entry] = {
    "fpb_50agree": _Entry(_FPB.format("50"), read_financial_phrasebank),
    "fpb_66agree": _Entry(_FPB.format("66"), read_financial_phrasebank),
    "fpb_75agree": _Entry(_FPB.format("75"), read_financial_phrasebank),
    "fpb_allagree": _Entry(_FPB.format("All"), read_financial_phrasebank),
    "twitter_fin": _Entry("twitter_financial_news_sentiment", read_twitter_financial,
                          ("sent_train.csv", "sent_valid.csv")),
    "banking77": _Entry("banking77", read_banking77, ("train.csv", "test.csv")),
    "clinc150": _Entry("clinc150/data_full.json", read_clinc150),
    "clinc150_oos_plus": _Entry("clinc150/data_oos_plus.json", read_clinc150),
    "bitext": _Entry("bitext_customer_support/Bitext_Sample_Customer_Support_Training_Dataset.csv", read_bitext),
}
DATASET_NAMES = tuple(DATASETS)


def load_dataset(name: str, root: str | Path) -> LabelledDataset:
    """Dataset `name` (one of `DATASET_NAMES`, case-insensitive) read from `root` = ``paths.shared_data``."""
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    entry = DATASETS[key]
    location = Path(root) / entry.relative
    for path in [location / file for file in entry.needs] or [location]:
        if not path.is_file():
            raise FileNotFoundError(f"dataset {key!r}: file not found: {path} (root {root} comes from the config "
                                    f"key {CONFIG_KEY}, env NLP_SUITE_SHARED_DATA)")
    return entry.reader(location, name=key)


def benchmark_splits(name: str, root: str | Path, seed: int = 0, val_fraction: float = 0.1) -> LabelledDataset:
    """train/val/test of a dataset by our benchmark protocol; validation always comes out of train.

    Pools with one split (Financial PhraseBank, Bitext) follow `stratified_protocol` (80/20, then 10 % of train).
    Datasets with an official held-out split use it as test (Twitter `valid`, Banking77 `test`, CLINC150 `test`
    when present, else `val`, since the shared copy withholds test), minus any text also in train.
    """
    dataset = load_dataset(name, root)
    if len(dataset.splits) == 1:
        return stratified_protocol(dataset, seed=seed, val_fraction=val_fraction, name=dataset.name)
    held_out = next(key for key in ("test", "valid", "val") if key in dataset.splits)
    train, dedup = dedupe(dataset["train"])
    test, across = dedupe_across(train, dataset[held_out])
    train, val = _stratified(train, val_fraction, seed, "validation")
    return LabelledDataset(dataset.name, {"train": train, "val": val, "test": test},
                           {"dedup": dedup, f"train&{held_out}": across})
