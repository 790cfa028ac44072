"""bench/scoring.py --quick runs end to end on SQLite and writes its table."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_bench_scoring_quick(tmp_path):
    out = tmp_path / "scoring"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "scoring.py"), "--quick", "--db", "sqlite",
                             "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["db"], r["model"]) for r in rows] == [("sqlite", "fp32"), ("sqlite", "int8")]
    for row in rows:
        assert row["documents"] == 3000 and row["bare docs/s"] > 0 and 0 < row["ratio"] < 2
    assert "end-to-end docs/s" in out.with_suffix(".md").read_text()
