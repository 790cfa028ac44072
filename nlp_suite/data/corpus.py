"""Unlabelled text for language-model pretraining, read in place from configured sources."""
from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from nlp_suite.paths import resolve

log = logging.getLogger(__name__)

_STORY = re.compile(r"<REUTERS\b.*?</REUTERS>", re.S)
_TITLE = re.compile(r"<TITLE>(.*?)</TITLE>", re.S)
_BODY = re.compile(r"<BODY>(.*?)</BODY>", re.S)
_TAG = re.compile(r"<[^>]+>")
_CONTROL = re.compile(r"&#\d+;")


def reuters_stories(folder: Path) -> Iterator[str]:
    """Title + body of each Reuters-21578 story (latin-1 SGML; wire control codes and tags removed)."""
    for path in sorted(Path(folder).glob("reut2-*.sgm")):
        for story in _STORY.findall(path.read_text(encoding="latin-1")):
            title = _TITLE.search(story)
            body = _BODY.search(story)
            parts = [title.group(1) if title else "", body.group(1) if body else ""]
            if not any(parts):  # UNPROC stories: raw text directly in <TEXT>
                parts = [_TAG.sub(" ", story.split("<TEXT", 1)[-1])]
            text = html.unescape(_CONTROL.sub(" ", " . ".join(p for p in parts if p)))
            text = re.sub(r"\s+", " ", text.replace(" Reuter ", " ")).strip()
            if text:
                yield text


def text_lines(path: Path) -> Iterator[str]:
    """Non-empty lines of a UTF-8 text file; wikitext section headings (' = x = ') skipped."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if line and not (line.startswith("=") and line.endswith("=")):
                yield line


def csv_column(path: Path, column: str) -> Iterator[str]:
    """Non-empty values of one CSV column."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=[column])
    yield from (text.strip() for text in frame[column] if text.strip())


def faq_questions(path: Path) -> Iterator[str]:
    """Questions and answers of a FAQ JSONL file."""
    from nlp_suite.tasks.reply import read_faq

    for entry in read_faq(path):
        yield from entry["questions"]
        yield entry["answer"]


def dataset_train_texts(name: str, root: Path) -> Iterator[str]:
    """Training-split texts of a labelled dataset, labels ignored (never its test split)."""
    from nlp_suite.data.datasets import benchmark_splits

    yield from benchmark_splits(name, root)["train"].texts


def text_folder(folder: Path) -> Iterator[str]:
    """Paragraphs of every .txt file under a folder (the user's own text)."""
    for path in sorted(Path(folder).rglob("*.txt")):
        for paragraph in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            if paragraph.strip():
                yield re.sub(r"\s+", " ", paragraph).strip()


def split_sentences(texts: Iterable[str], min_words: int = 5) -> Iterator[str]:
    """Sentences of each text (sentencex's rules: abbreviations, decimals), without short fragments and all-caps
    wire headlines ("NEWS CORP UNIT LOAN TO RISE .")."""
    from sentencex import segment

    for text in texts:
        for sentence in segment("en", text):
            sentence = sentence.strip()
            words = sentence.split()
            if len(words) < min_words or sum(w.isupper() for w in words) > 0.6 * len(words):
                continue
            yield sentence


def read_source(spec: dict[str, Any], shared_root: Path) -> list[str]:
    """Texts of one configured source: {kind: reuters|lines|csv|faq|dataset|folder, path|name, column}; with
    `sentences: true` each text is split into sentences (`min_words`, default 5, drops fragments)."""
    if spec.get("sentences"):
        whole = {key: value for key, value in spec.items() if key not in ("sentences", "min_words")}
        return list(split_sentences(read_source(whole, shared_root), int(spec.get("min_words", 5))))
    kind = spec.get("kind")
    if kind == "dataset":
        return list(dataset_train_texts(spec["name"], shared_root))
    path = resolve(spec["path"])
    if not path.exists():
        raise FileNotFoundError(f"pretraining source {kind!r} not found: {path}")
    readers = {"reuters": lambda: reuters_stories(path), "lines": lambda: text_lines(path),
               "csv": lambda: csv_column(path, spec["column"]), "faq": lambda: faq_questions(path),
               "folder": lambda: text_folder(path)}
    if kind not in readers:
        raise ValueError(f"unknown pretraining source kind {kind!r}; use one of {sorted(readers) + ['dataset']}")
    return list(readers[kind]())


def read_corpus(specs: Iterable[dict[str, Any]], shared_root: Path, *, required: bool = False
                ) -> tuple[list[str], dict[str, int]]:
    """All texts of the sources that exist, exact duplicates removed; missing optional sources are skipped."""
    texts, counts, seen = [], {}, set()
    for spec in specs:
        label = (spec.get("name") or str(spec.get("path"))) + (f"[{spec['column']}]" if spec.get("column") else "") \
            + (" (sentences)" if spec.get("sentences") else "")
        try:
            found = read_source(dict(spec), shared_root)
        except FileNotFoundError as error:
            if required or spec.get("required"):
                raise
            log.warning("skipping text source: %s", error)
            continue
        fresh = [t for t in found if not (t in seen or seen.add(t))]
        counts[label] = len(fresh)
        texts.extend(fresh)
        log.info("text source %s: %d texts (%d duplicates dropped)", label, len(fresh), len(found) - len(fresh))
    if not texts:
        raise ValueError("no text found in the configured sources (task.sources or distill.transfer); check "
                         "paths.shared_data")
    return texts, counts
