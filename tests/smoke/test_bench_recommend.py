"""`bench/recommend.py --quick`: the split, the three baselines and our model on a MovieLens slice, < 60 s."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("NLP_SUITE_SHARED_DATA", ROOT.parent / "shared" / "data"))
MOVIELENS = SHARED_DATA / "movielens_latest_small"

pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(not MOVIELENS.is_dir(), reason=f"MovieLens latest-small not found at {MOVIELENS}")]

COLUMNS = ("ndcg@5", "ndcg@10", "hit@10", "mrr", "auc", "cold_ndcg@10", "cold_chance_ndcg@10")


def test_quick_recommend_benchmark_prints_table_and_writes_reports(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "NLP_SUITE_VAR": str(tmp_path / "var"), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "recommend.py"), "--quick", "--threads", "1",
                           "--out", str(out), "--shared-data", str(SHARED_DATA)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert elapsed < 60
    for name in ("most-popular", "item-kNN", "BPR-MF", "ours"):
        assert name in done.stdout
    assert "cold nDCG@10" in done.stdout and "chance" in done.stdout

    report = json.loads((out / "recommend.json").read_text(encoding="utf-8"))
    assert report["quick"] and report["split"]["users"] <= 60
    assert set(report["models"]) == {"most-popular", "item-kNN", "BPR-MF", "ours", "ours (text only)"}
    assert report["models"]["ours"]["weights"]["cooccurrence"] == 1.0  # chosen on validation, scale fixed
    for found in report["models"].values():
        assert all(0.0 <= found["metrics"][key] <= 1.0 for key in COLUMNS)
        assert found["train_seconds"] >= 0 and found["top10_seconds"] > 0
    assert report["models"]["ours"]["val_examples"] > 0  # early stopping on the train part's last positives
    markdown = (out / "recommend.md").read_text(encoding="utf-8")
    assert "| ours |" in markdown and "Verdict" in markdown
