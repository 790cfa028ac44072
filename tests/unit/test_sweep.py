"""Hyperparameter search: a real 2-trial Hydra multirun on the sample data (subprocess: Hydra owns sys.argv and
logging), its results/table/plot, no promotion; the summariser and the command line it builds."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from nlp_suite.config import db_url, load_config
from nlp_suite.paths import project_root
from nlp_suite.storage.session import session_scope
from nlp_suite.sweep import PLOT, RESULTS, TABLE, hydra_argv, summarise
from nlp_suite.training import registry

TINY = ["model.embed_dim=16", "model.vocab_size=300", "train.epochs=1", "train.batch_size=64", "train.progress=false"]


def run_sweep(var, *overrides) -> subprocess.CompletedProcess:
    """`python -m nlp_suite.sweep` in an empty working folder, everything generated under `var`."""
    workdir = var / "cwd"
    workdir.mkdir()
    env = {**os.environ, "NLP_SUITE_VAR": str(var), "NLP_SUITE_ROOT": str(project_root()), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "nlp_suite.sweep", *overrides, *TINY], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not any(workdir.iterdir()), "the sweep wrote into the working folder"
    return done


def the_sweep_dir(var):
    """The one sweep folder under <var>/sweeps/ (default location)."""
    (sweep_dir,) = (var / "sweeps").iterdir()
    return sweep_dir


def assert_registered_not_promoted(var, count: int) -> None:
    """`count` sentiment candidates in the registry and no active model."""
    with session_scope(db_url(load_config([f"paths.var={var}"]))) as session:
        versions = registry.list_versions(session, "sentiment")
        assert len(versions) == count and {v.status for v in versions} == {"candidate"}
        assert registry.active_version(session, "sentiment") is None


def test_a_two_trial_grid_sweep_writes_results_table_and_plot_and_promotes_nothing(tmp_path):
    run_sweep(tmp_path, "model.hidden_dim=16,24")
    sweep_dir = the_sweep_dir(tmp_path)
    records = [json.loads(line) for line in (sweep_dir / RESULTS).read_text().splitlines()]
    assert sorted(r["trial"] for r in records) == [0, 1]
    assert sorted(r["params"]["model.hidden_dim"] for r in records) == [16, 24]
    for r in records:
        assert r["monitor"] == "macro_f1" and 0 <= r["metric"] <= 1 and r["parameters"] > 0 and r["seconds"] > 0
        assert r["promoted"] is False and "model.hidden_dim=" + str(r["params"]["model.hidden_dim"]) in r["overrides"]
    table = (sweep_dir / TABLE).read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    best = max(records, key=lambda r: r["metric"])
    assert len(rows) == 2 and rows[0].startswith(f"| 1 | {best['trial']} | {best['metric']:.4f} |")
    assert "model.hidden_dim" in table and "train.epochs" not in table  # only what varied is a column
    assert (sweep_dir / PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_registered_not_promoted(tmp_path, 2)


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="hydra-optuna-sweeper not installed (pip install -e '.[sweep]')")
def test_the_optuna_search_space_runs_and_maximises_the_metric(tmp_path):
    done = run_sweep(tmp_path, "+hparams_search=sentiment", "hydra.sweeper.n_trials=2",
                     "model.hidden_dim=choice(16,24)", "model.num_layers=1")
    records = [json.loads(line) for line in (the_sweep_dir(tmp_path) / RESULTS).read_text().splitlines()]
    assert len(records) == 2 and {"train.lr", "model.dropout", "model.rnn"} <= set(records[0]["params"])
    assert f"Best value: {max(r['metric'] for r in records)}" in done.stdout + done.stderr
    assert (the_sweep_dir(tmp_path) / TABLE).is_file() and (the_sweep_dir(tmp_path) / PLOT).is_file()
    assert_registered_not_promoted(tmp_path, 2)


def test_summarise_ranks_trials_and_plots_numbers_and_categories(tmp_path):
    trials = [(0.61, 64, 1e-3, "lstm"), (math.nan, 128, 3e-2, "gru"), (0.72, 128, 3e-3, "gru"),
              (0.55, 64, 1e-2, "lstm")]
    with open(tmp_path / RESULTS, "w", encoding="utf-8") as handle:
        for number, (metric, hidden, lr, rnn) in enumerate(trials):
            handle.write(json.dumps({
                "trial": number, "task": "sentiment", "monitor": "macro_f1", "metric": metric, "seconds": 1.5,
                "parameters": 1000 + number, "version_id": 10 + number, "model": f"m{number}",
                "params": {"model.hidden_dim": hidden, "train.lr": lr, "model.rnn": rnn, "train.epochs": 2}}) + "\n")
    table, plot = summarise(tmp_path)
    ranks = [line.split(" | ")[1] for line in table.read_text().splitlines() if line.startswith("| ") and
             not line.startswith("| rank")]
    assert ranks == ["2", "0", "3", "1"]  # best first, the diverged (NaN) trial last
    assert "Best: trial 2, val macro_f1 0.7200, model version 12" in table.read_text()
    assert "train.epochs" not in table.read_text() and plot.read_bytes()[:4] == b"\x89PNG"


def test_the_hydra_command_line_is_a_multirun_under_var_with_the_summary_callback():
    argv = hydra_argv(["model.rnn=lstm,gru", "--cfg", "hydra"])
    assert argv[:2] == ["--cfg", "hydra"] and "--multirun" not in argv  # flags first; --cfg excludes -m
    argv = hydra_argv(["model.rnn=lstm,gru", "hydra.sweep.dir=/tmp/here"])
    assert argv[0] == "--multirun" and [a for a in argv if a.startswith("hydra.sweep.dir=")] == [
        "hydra.sweep.dir=/tmp/here"]
    assert argv[-1].endswith("_target_=nlp_suite.sweep.SweepSummary")
