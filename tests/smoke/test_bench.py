"""`bench/accuracy.py --quick`: trains TF-IDF and the LSTM on a slice of FPB 50Agree, prints the table, writes JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"

pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"real datasets not found at {SHARED_DATA}")]


def test_quick_benchmark_prints_anchors_and_writes_json(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "NLP_SUITE_VAR": str(tmp_path / "var"), "HF_HUB_OFFLINE": "1", "COLUMNS": "240"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "accuracy.py"), "--quick", "--datasets", "fpb_50agree", "--no-peer",
         "--out", str(out), "--shared-data", str(SHARED_DATA)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert elapsed < 90

    # The table puts our numbers beside the published anchors.
    anchors_row = [line for line in done.stdout.splitlines() if "fpb_50agree" in line and "accuracy" in line]
    assert anchors_row, done.stdout
    assert "FinBERT 0.860" in anchors_row[0] and "ULMFiT 0.830" in anchors_row[0] and "LSTM 0.710" in anchors_row[0]
    assert "efficiency" in done.stdout
    assert "device: cpu" in done.stdout or "device: cuda" in done.stdout

    report = json.loads((out / "accuracy.json").read_text(encoding="utf-8"))
    found = report["datasets"]["fpb_50agree"]
    for method in ("ours", "tfidf"):
        assert 0.0 <= found[method]["accuracy"] <= 1.0
        assert 0.0 <= found[method]["macro_f1"] <= 1.0
    ours = found["ours"]
    assert ours["parameters"] > 0 and ours["tokens_per_second"] > 0 and 0.0 <= ours["pad_waste"] < 1.0
    efficiency = ours["efficiency"]
    assert efficiency["ratio"] > 0 and efficiency["model_vs_bare"] > 0
    # one bare timing per epoch, taken right after it at that epoch's shape (the machine's speed drifts)
    assert [e["epoch"] for e in efficiency["per_epoch"]] == list(range(1, ours["epochs_run"] + 1))
    assert all(e["bare_tokens_per_second"] > 0 and e["ratio_with_validation"] <= e["ratio"]
               for e in efficiency["per_epoch"])
    assert found["peer"] == {"skipped": "disabled (--no-peer)"}
    assert found["rows"]["train"] <= 400  # --quick limits the training rows
    # test metrics are the ones train(cfg) reported on the same split (no re-selection on test)
    assert ours["accuracy"] == pytest.approx(ours["reported_test_accuracy"])
    markdown = (out / "accuracy.md").read_text(encoding="utf-8")
    assert "| fpb_50agree | accuracy |" in markdown and "FinBERT 0.860" in markdown


def test_no_scratch_skips_the_scratch_lstm_and_says_so(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "NLP_SUITE_VAR": str(tmp_path / "var"), "HF_HUB_OFFLINE": "1", "COLUMNS": "240"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "accuracy.py"), "--quick", "--datasets", "fpb_50agree", "--no-peer",
         "--no-scratch", "--out", str(out), "--shared-data", str(SHARED_DATA)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads((out / "accuracy.json").read_text(encoding="utf-8"))["datasets"]["fpb_50agree"]
    assert found["ours"] == {"skipped": "disabled (--no-scratch)"} and 0.0 <= found["tfidf"]["accuracy"] <= 1.0
    assert "| fpb_50agree | accuracy | skipped |" in (out / "accuracy.md").read_text(encoding="utf-8")


def test_an_ensemble_reports_each_member_and_the_growing_average(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "NLP_SUITE_VAR": str(tmp_path / "var"), "HF_HUB_OFFLINE": "1", "COLUMNS": "240"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "accuracy.py"), "--quick", "--datasets", "fpb_50agree", "--no-peer",
         "--out", str(out), "--shared-data", str(SHARED_DATA), "train.ensemble=3", "train.epochs=1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ours = json.loads((out / "accuracy.json").read_text(encoding="utf-8"))["datasets"]["fpb_50agree"]["ours"]
    assert [m["member"] for m in ours["students"]] == [0, 1, 2]
    assert all(0.0 <= m["accuracy"] <= 1.0 and m["epochs_run"] == 1 for m in ours["students"])
    assert set(ours["first_k_students"]) == {"2"} and 0.0 <= ours["first_k_students"]["2"]["accuracy"] <= 1.0
    assert ours["accuracy"] == pytest.approx(ours["reported_test_accuracy"])  # the ensemble's own test score
