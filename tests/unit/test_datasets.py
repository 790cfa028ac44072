"""Labelled dataset readers, duplicate reports and the stratified train/val/test protocol."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nlp_suite.data.datasets import (DATASET_NAMES, OOS_LABEL, DatasetError, LabelledDataset, Split, dedupe,
                                     dedupe_across, in_scope, load_dataset, read_banking77, read_bitext,
                                     read_clinc150, read_financial_phrasebank, read_twitter_financial,
                                     stratified_protocol)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def needs(folder: str):
    """Decorator for a test on one real dataset folder: marked `realdata`, skipped when the folder is absent."""
    path = SHARED_DATA / folder

    def mark(test):
        test = pytest.mark.skipif(not path.is_dir(), reason=f"real dataset folder absent: {path}")(test)
        return pytest.mark.realdata(test)
    return mark


# ------------------------------------------------------------------------------------------ Financial PhraseBank

def test_fpb_latin1_last_at_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "Sentences_50Agree.txt"
    path.write_bytes("Sepp\xe4l\xe4 Oyj profit rose to EUR 5 mn .@positive\r\n"
                     "Contact: ir@company.fi for details .@neutral\r\n"
                     "\r\n"
                     "Sales fell 10 % .@negative\r\n".encode("latin-1"))
    data = read_financial_phrasebank(path)
    assert list(data.splits) == ["all"]
    assert data["all"].texts == ["Seppälä Oyj profit rose to EUR 5 mn .", "Contact: ir@company.fi for details .",
                                 "Sales fell 10 % ."]
    assert data["all"].labels == ["positive", "neutral", "negative"]
    assert data.labels == ["negative", "neutral", "positive"]


@pytest.mark.parametrize("bad, why", [("no label at all", "no '@'"), ("Sales up .@Positive", "unknown label 'Positive'"),
                                      ("Sales up .@mixed", "unknown label 'mixed'"), ("@neutral", "empty sentence")])
def test_fpb_malformed_line_names_file_and_line(tmp_path: Path, bad: str, why: str) -> None:
    path = tmp_path / "fpb.txt"
    path.write_bytes(f"Fine .@neutral\n\nAlso fine .@positive\n{bad}\n".encode("latin-1"))
    with pytest.raises(DatasetError) as raised:
        read_financial_phrasebank(path)
    assert isinstance(raised.value, ValueError)
    assert raised.value.line == 4
    assert str(path) in str(raised.value) and "line 4" in str(raised.value) and why in str(raised.value)


# ------------------------------------------------------------------------------------------------- Twitter

def test_twitter_multiline_quoted_tweet_and_label_names(tmp_path: Path) -> None:
    (tmp_path / "sent_train.csv").write_text(
        'text,label\n$BYND - JPMorgan reels in expectations https://t.co/x,0\n'
        '"CITRON SAYS IT\'S LONG ON LUCKIN COFFEE\n\nMW vs ""CItron""",1\nNA,2\n', encoding="utf-8")
    (tmp_path / "sent_valid.csv").write_text("text,label\nMarkets flat,2\n", encoding="utf-8")
    data = read_twitter_financial(tmp_path)
    assert {name: len(split) for name, split in data.splits.items()} == {"train": 3, "valid": 1}
    assert data["train"].texts[1] == 'CITRON SAYS IT\'S LONG ON LUCKIN COFFEE\n\nMW vs "CItron"'
    assert data["train"].texts[2] == "NA"  # not turned into a missing value
    assert data["train"].labels == ["negative", "positive", "neutral"]


def test_twitter_unknown_label_names_file_and_row(tmp_path: Path) -> None:
    (tmp_path / "sent_train.csv").write_text('text,label\nok,0\n"two\nlines",3\n', encoding="utf-8")
    (tmp_path / "sent_valid.csv").write_text("text,label\nok,1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"sent_train\.csv, data row 2: unknown label id '3'"):
        read_twitter_financial(tmp_path)


# ----------------------------------------------------------------------------------------------- Banking77

def test_banking77_reads_splits_strips_and_checks_categories(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text('text,category\n"\nHow do I unblock my PIN?",pin_blocked\n'
                                        "Where is my card?,card_arrival\n", encoding="utf-8")
    (tmp_path / "test.csv").write_text("text,category\nHow do I unblock my PIN?,pin_blocked\n", encoding="utf-8")
    data = read_banking77(tmp_path)
    assert data["train"].texts == ["How do I unblock my PIN?", "Where is my card?"]
    assert data.report["train&test"].duplicates == 1  # only visible once the leading newline is stripped
    (tmp_path / "categories.json").write_text(json.dumps(["card_arrival"]), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"train\.csv, data row 1: category 'pin_blocked' is not in categories"):
        read_banking77(tmp_path)


def test_csv_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("utterance,intent\nhi,greet\n", encoding="utf-8")
    (tmp_path / "test.csv").write_text("text,category\nhi,greet\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['text', 'category'\]"):
        read_banking77(tmp_path)


# ------------------------------------------------------------------------------------------------- CLINC150

def _clinc(tmp_path: Path, with_test: bool) -> Path:
    data = {"train": [["what is my balance", "balance"], ["tell me a joke", "tell_joke"]],
            "val": [["how much money do i have", "balance"]],
            "oos_train": [["how tall is everest", "oos"]], "oos_val": [["who wrote hamlet", "oos"]]}
    if with_test:
        data |= {"test": [["balance please", "balance"], ["joke time", "tell_joke"]],
                 "oos_test": [["what is the capital of peru", "oos"]]}
    path = tmp_path / "data_full.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_clinc_without_test_keys_merges_oos(tmp_path: Path) -> None:
    data = read_clinc150(_clinc(tmp_path, with_test=False))
    assert list(data.splits) == ["train", "val"]
    assert data["train"].labels == ["balance", "tell_joke", OOS_LABEL]
    assert data["val"].texts == ["how much money do i have", "who wrote hamlet"]
    assert in_scope(data["train"]).labels == ["balance", "tell_joke"]
    assert OOS_LABEL in data.labels


def test_clinc_with_test_keys_as_in_the_original_release(tmp_path: Path) -> None:
    data = read_clinc150(_clinc(tmp_path, with_test=True))
    assert list(data.splits) == ["train", "val", "test"]
    assert data["test"].labels == ["balance", "tell_joke", OOS_LABEL]
    assert len(in_scope(data["test"])) == 2


def test_clinc_bad_pair_is_named(tmp_path: Path) -> None:
    path = tmp_path / "data_full.json"
    path.write_text(json.dumps({"train": [["ok", "balance"], ["no intent"]]}), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"train\[1\] is not a \[text, intent\] pair"):
        read_clinc150(path)


# --------------------------------------------------------------------------------------------------- Bitext

def test_bitext_exposes_aligned_responses(tmp_path: Path) -> None:
    path = tmp_path / "bitext.csv"
    path.write_text("context,role,instruction,intent,entity_type,category,tags,response\n"
                    'cs,va,cancel order 12,cancel_order,order_id,ORDER,BIL,"Sure.\n\n1. Log in to {{Website Name}}."\n'
                    "cs,va,where is my refund,track_refund,,REFUND,B,Let me check.\n", encoding="utf-8")
    data = read_bitext(path)
    assert data["all"].texts == ["cancel order 12", "where is my refund"]
    assert data["all"].labels == ["cancel_order", "track_refund"]
    assert data.responses == ["Sure.\n\n1. Log in to {{Website Name}}.", "Let me check."]
    pool = Split([f"{t} {i}" for i in range(4) for t in data["all"].texts], data["all"].labels * 4,
                 data.responses * 4)
    test = stratified_protocol(pool, test_fraction=0.5, val_fraction=0)["test"]
    assert [pool.responses[pool.texts.index(text)] for text in test.texts] == test.responses  # still aligned


# ------------------------------------------------------------------------------------------ de-duplication

def test_dedupe_counts_copies_and_conflicts() -> None:
    split = Split(["a", "b", "a", "c", "b", "a", "d"], ["x", "y", "x", "x", "z", "x", "y"])
    report = LabelledDataset("toy", {"all": split}).report["all"]
    assert (report.rows, report.duplicates, report.conflicts, report.removed) == (7, 3, ("b",), 0)
    kept, removed = dedupe(split)  # conflicting 'b' dropped altogether
    assert (kept.texts, kept.labels) == (["a", "c", "d"], ["x", "x", "y"])
    assert (removed.duplicates, removed.conflicts, removed.removed) == (3, ("b",), 4)
    kept, removed = dedupe(split, on_conflict="first")
    assert (kept.texts, kept.labels, removed.removed) == (["a", "b", "c", "d"], ["x", "y", "x", "y"], 3)


def test_dedupe_across_removes_test_rows_seen_in_train() -> None:
    train = Split(["a", "b", "c"], ["x", "y", "x"])
    test = Split(["a", "e", "b", "a", "f"], ["x", "x", "x", "x", "y"])
    kept, report = dedupe_across(train, test)
    assert (kept.texts, kept.labels) == (["e", "f"], ["x", "y"])
    assert (report.rows, report.duplicates, report.removed, report.conflicts) == (5, 3, 3, ("b",))
    audit = LabelledDataset("toy", {"train": train, "test": test}).report["train&test"]
    assert (audit.duplicates, audit.conflicts, audit.removed) == (3, ("b",), 0)


# ----------------------------------------------------------------------------------------------- protocol

def test_protocol_sizes_stratification_and_no_leak() -> None:
    texts = [f"sentence {i}" for i in range(1000)]
    labels = ["neutral"] * 600 + ["positive"] * 250 + ["negative"] * 150
    texts += ["sentence 1", "sentence 2", "sentence 999"]  # 3 exact copies; 'sentence 999' conflicts
    labels += ["neutral", "neutral", "positive"]
    data = stratified_protocol(Split(texts, labels), name="toy")
    assert data.report["dedup"].removed == 4 and data.report["dedup"].conflicts == ("sentence 999",)
    sizes = {name: len(split) for name, split in data.splits.items()}
    assert sizes == {"train": 719, "val": 80, "test": 200}  # 999 -> 20 % test (ceil), 10 % of the rest val
    for name, split in data.splits.items():
        shares = {label: count / len(split) for label, count in Counter(split.labels).items()}
        assert shares == pytest.approx({"neutral": 0.6, "positive": 0.25, "negative": 0.15}, abs=0.01), name
    all_texts = [t for split in data.splits.values() for t in split.texts]
    assert len(all_texts) == len(set(all_texts)) == 999
    assert all(data.report[pair].duplicates == 0 for pair in ("train&val", "train&test", "val&test"))
    again = stratified_protocol(Split(texts, labels), seed=0)
    assert again["test"].texts == data["test"].texts  # same seed, same split
    assert stratified_protocol(Split(texts, labels), seed=1)["test"].texts != data["test"].texts


def test_protocol_rejects_unstratifiable_labels() -> None:
    with pytest.raises(ValueError, match=r"fewer than 2 rows: \['rare'\]"):
        stratified_protocol(Split(["a", "b", "c", "d", "e"], ["x", "x", "x", "x", "rare"]))


# ------------------------------------------------------------------------------------------------- registry

def test_load_dataset_unknown_name_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'fpb_90agree'; known: fpb_50agree") as raised:
        load_dataset("fpb_90agree", tmp_path)
    assert all(name in str(raised.value) for name in ("twitter_fin", "banking77", "clinc150", "bitext"))


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_load_dataset_missing_file_names_path_and_config_key(tmp_path: Path, name: str) -> None:
    with pytest.raises(FileNotFoundError, match=r"paths\.shared_data") as raised:
        load_dataset(name, tmp_path)
    assert str(tmp_path) in str(raised.value)


def test_load_dataset_dispatches(tmp_path: Path) -> None:
    folder = tmp_path / "clinc150"
    folder.mkdir()
    _clinc(folder, with_test=False)
    data = load_dataset("CLINC150", tmp_path)
    assert data.name == "clinc150" and list(data.splits) == ["train", "val"]


# ---------------------------------------------------------------------------------- real data (SOURCE.md)

FPB_COUNTS = {  # rows, negative, neutral, positive, extra copies, conflicting texts
    "fpb_50agree": (4846, 604, 2879, 1363, 8, 2), "fpb_66agree": (4217, 514, 2535, 1168, 6, 0),
    "fpb_75agree": (3453, 420, 2146, 887, 5, 0), "fpb_allagree": (2264, 303, 1391, 570, 5, 0)}


@needs("financial_phrasebank")
@pytest.mark.parametrize("name", FPB_COUNTS)
def test_real_financial_phrasebank(name: str) -> None:
    rows, negative, neutral, positive, copies, conflicts = FPB_COUNTS[name]
    data = load_dataset(name, SHARED_DATA)
    assert len(data["all"]) == rows
    assert data["all"].label_counts() == {"negative": negative, "neutral": neutral, "positive": positive}
    assert (data.report["all"].duplicates, len(data.report["all"].conflicts)) == (copies, conflicts)
    protocol = stratified_protocol(data)
    unique = rows - copies - conflicts  # each conflicting text has exactly 2 copies, both dropped
    assert sum(len(split) for split in protocol.splits.values()) == unique
    assert len(protocol["test"]) == -(-unique * 2 // 10)
    texts = [t for split in protocol.splits.values() for t in split.texts]
    assert len(set(texts)) == len(texts)


@needs("twitter_financial_news_sentiment")
def test_real_twitter_financial() -> None:
    data = load_dataset("twitter_fin", SHARED_DATA)
    assert data["train"].label_counts() == {"negative": 1442, "neutral": 6178, "positive": 1923}
    assert data["valid"].label_counts() == {"negative": 347, "neutral": 1566, "positive": 475}
    assert sum("\n" in text for text in data["train"].texts) == 184  # multi-line quoted tweets
    assert data.report["train&valid"].duplicates == 0
    assert data.report["train"].duplicates == 3  # 3 tweets differ only in surrounding whitespace
    assert data.report["valid"].duplicates == 0 and not data.report["train"].conflicts


@needs("banking77")
def test_real_banking77() -> None:
    data = load_dataset("banking77", SHARED_DATA)
    assert (len(data["train"]), len(data["test"]), len(data.labels)) == (10003, 3080, 77)
    assert set(data["test"].label_counts().values()) == {40}
    train_counts = data["train"].label_counts()
    assert (train_counts["contactless_not_working"], train_counts["card_payment_fee_charged"]) == (35, 187)
    # SOURCE.md: no exact overlap; once leading/trailing newlines are stripped, 6 test texts are in train.
    report = data.report["train&test"]
    assert (report.duplicates, report.conflicts) == (6, ())
    assert (data.report["train"].duplicates, data.report["test"].duplicates) == (4, 1)
    test, removed = dedupe_across(data["train"], data["test"])
    assert (len(test), removed.removed) == (3074, 6)


@needs("clinc150")
@pytest.mark.parametrize("name, oos_train", [("clinc150", 100), ("clinc150_oos_plus", 250)])
def test_real_clinc150(name: str, oos_train: int) -> None:
    data = load_dataset(name, SHARED_DATA)
    assert list(data.splits) == ["train", "val"]  # test / oos_test withheld in the shared copy
    assert len(data["train"]) == 15000 + oos_train and len(data["val"]) == 3000 + 100
    assert (len(in_scope(data["train"])), len(in_scope(data["val"]))) == (15000, 3000)
    assert len(data.labels) == 151
    assert set(Counter(in_scope(data["train"]).labels).values()) == {100}
    assert set(Counter(in_scope(data["val"]).labels).values()) == {20}
    report = data.report["train&val"]
    assert report.duplicates == 3  # hey what's up / turn up your volume / what is on my to do list
    assert report.conflicts == ("turn up your volume", "what is on my to do list")


@needs("bitext_customer_support")
def test_real_bitext() -> None:
    data = load_dataset("bitext", SHARED_DATA)
    split = data["all"]
    assert (len(split), len(data.labels)) == (4514, 27)
    counts = split.label_counts()
    assert (counts["cancel_order"], counts["delivery_period"]) == (139, 204)
    assert len(set(split.texts)) == 4514 and len(set(data.responses)) == 4513
    assert sum("{{" in response for response in data.responses) > 0
