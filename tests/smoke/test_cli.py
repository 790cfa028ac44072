"""The CLI edge: help for every command, clear configuration errors, exit codes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nlp_suite.cli import build_parser, main

COMMANDS = ["ingest", "pretrain", "train", "finetune", "distill", "score", "alerts", "recommend", "demo", "serve", "sample", "db", "models",
            "serve-flows"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "Hydra overrides" in capsys.readouterr().out


def test_postgres_without_url_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("NLP_SUITE_DB_URL", raising=False)
    assert main(["db", "current", "db=postgres"]) == 1
    assert "NLP_SUITE_DB_URL" in capsys.readouterr().err


def test_db_commands_and_console_script(tmp_path):
    env = {**os.environ, "NLP_SUITE_VAR": str(tmp_path)}
    script = os.path.join(os.path.dirname(sys.executable), "nlp-suite")
    upgraded = subprocess.run([script, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    current = subprocess.run([script, "db", "current"], env=env, capture_output=True, text=True, timeout=120)
    from nlp_suite.storage.migrate import head

    assert f"at {head()} (head {head()})" in current.stdout
    assert (tmp_path / "nlp_suite.db").exists()


def test_unknown_override_fails_cleanly(capsys):
    assert main(["db", "current", "no_such_key=1"]) == 1
    assert "no_such_key" in capsys.readouterr().err
