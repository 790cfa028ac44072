"""Process defaults for running offline on a small machine: set before Prefect or Gradio is imported."""
from __future__ import annotations

import os
from pathlib import Path

from nlp_suite.paths import resolve


def apply_defaults(var_dir: str | os.PathLike | None = None) -> None:
    """Offline, quiet, project-local Prefect home; never overrides what the user already set."""
    var = resolve(var_dir or os.environ.get("NLP_SUITE_VAR", "var"))
    defaults = {
        "PREFECT_HOME": str(Path(var) / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The temporary server needs more than the default 20 s on a loaded 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "nlp_suite",  # library logs show up in flow-run logs
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # Prefect's temporary server cannot create its SQLite file in a folder that does not exist.
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
