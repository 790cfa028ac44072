"""The README's promise: `make demo SERVE=0` finishes in ≤ 5 minutes, and the served app answers from the model."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nlp_suite.paths import project_root
from tests.helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.prefect]
BIN = Path(sys.executable).parent



def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="module")
def demo_var(tmp_path_factory):
    """Run `make demo SERVE=0` once into a fresh var/ folder."""
    var = tmp_path_factory.mktemp("demo-var")
    env = {**os.environ, "NLP_SUITE_VAR": str(var), "PREFECT_HOME": str(var / "prefect")}
    env.pop("PREFECT_API_URL", None)  # the demo uses Prefect's own temporary server
    start = time.monotonic()
    done = subprocess.run(["make", "demo", "SERVE=0"], cwd=project_root(), env=env, capture_output=True, text=True,
                          timeout=600)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return var, env, seconds, done.stdout


def test_make_demo_without_serving_runs_the_pipeline_within_five_minutes(demo_var):
    var, _, seconds, stdout = demo_var
    assert seconds <= 300, f"make demo SERVE=0 took {seconds:.0f} s"
    for stage in ("ingest", "train sentiment", "train reply", "train recommend", "score", "alerts", "recommend"):
        assert stage in stdout
    assert "1 new alert(s)" in stdout
    assert (var / "nlp_suite.db").exists()


def test_served_app_answers_a_chat_message_with_the_trained_model(demo_var):
    from gradio_client import Client

    var, env, _, _ = demo_var
    port = free_port()
    server = subprocess.Popen([str(BIN / "nlp-suite"), "serve", f"ui.port={port}"], cwd=project_root(), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", server)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        reply = client.predict("How do I reset my password?", True, api_name="/respond")
        assert "reset_password" in reply  # details line names the model's intent
        assert "not sure" not in reply.lower()
    finally:
        server.terminate()
        server.wait(timeout=30)
