"""Hyperparameter search: a Hydra multirun over conf/, one `train(cfg)` per trial; results as JSONL, table and plot.

    python -m nlp_suite.sweep model.hidden_dim=64,128 model.rnn=lstm,gru          # grid (Hydra's basic sweeper)
    python -m nlp_suite.sweep +hparams_search=sentiment_grid                        # the grid in conf/hparams_search
    python -m nlp_suite.sweep +hparams_search=sentiment                             # Optuna TPE (pip install .[sweep])

`nlp-suite sweep ...` is the same. A sweep is always a multirun (`-m` is added), its folder defaults to
`<paths.var>/sweeps/<time>`, each trial appends one JSON line to `results.jsonl` there, and when the last trial is
done `summarise` writes `summary.md` (trials sorted by the validation metric) and `summary.png`. Trials register
their models as candidates but never promote them (`train.promote=false`): a sweep must not replace the served
model as a side effect; promote the winner deliberately with `nlp-suite models promote --id N`.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from nlp_suite.paths import conf_dir, resolve

log = logging.getLogger(__name__)

RESULTS, TABLE, PLOT = "results.jsonl", "summary.md", "summary.png"
# Under paths.var like every generated file (Hydra's default is ./multirun/ in whatever folder one stands in).
DEFAULT_SWEEP_DIR = "${nlp_suite.abspath:${paths.var}}/sweeps/${now:%Y-%m-%d_%H-%M-%S}"
CALLBACK = "+hydra.callbacks.sweep_summary._target_=nlp_suite.sweep.SweepSummary"
# Hydra flags that pick what the command does; Hydra accepts only one of them.
MODE_FLAGS = {"-m", "--multirun", "-r", "--run", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion", "-h",
              "--help", "--hydra-help", "--version"}

# conf paths are project-relative (see nlp_suite.config.load_config); the sweep folder must be too.
OmegaConf.register_new_resolver("nlp_suite.abspath", lambda path: str(resolve(path)), replace=True)


def trial_config(cfg: DictConfig) -> DictConfig:
    """The trial's config with absolute paths (as load_config makes them) and promotion switched off."""
    for key in ("var", "models", "shared_data"):
        cfg.paths[key] = str(resolve(cfg.paths[key]))
    with open_dict(cfg):
        cfg.train.promote = False  # forced, whatever the overrides say: trials are candidates, never served
    OmegaConf.resolve(cfg)
    return cfg


def override_values(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, Any]:
    """{key: value} of a trial's `key=value` overrides: typed values from the config, group choices as given."""
    values = {}
    for override in overrides:
        key, separator, raw = override.partition("=")
        key = key.lstrip("+")
        if not separator or key.startswith(("~", "hydra.")):
            continue
        value = OmegaConf.select(cfg, key, default=raw)
        values[key] = value if isinstance(value, (int, float, str, bool)) or value is None else raw
    return values


def append_result(path: Path, record: dict[str, Any]) -> None:
    """One JSON line per trial, written in a single call so parallel launchers cannot interleave lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def trial(cfg: DictConfig) -> float:
    """One trial: train with this trial's overrides, record it, return the validation metric (to maximise)."""
    from nlp_suite.pipeline import ensure_database, ensure_sample_data
    from nlp_suite.training.train import train

    started = time.perf_counter()
    cfg = trial_config(cfg)
    ensure_database(cfg)
    ensure_sample_data(cfg)
    result = train(cfg)
    metric = float(result.metrics[result.monitor])
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        overrides = list(hydra_cfg.overrides.task)
        append_result(Path(hydra_cfg.sweep.dir) / RESULTS, {
            "trial": hydra_cfg.job.num, "overrides": overrides, "params": override_values(cfg, overrides),
            "task": result.task, "monitor": result.monitor, "metric": metric,
            "seconds": round(time.perf_counter() - started, 2), "train_seconds": round(result.seconds, 2),
            "parameters": result.parameters, "trainable_share": result.metrics.get("trainable_share"),
            "version_id": result.version_id, "model": result.name, "path": result.path, "promoted": result.promoted})
    log.info("trial %s: %s=%.4f (%s)", hydra_cfg.job.num, result.monitor, metric, result.reason)
    return metric


def load_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """The trial records of a sweep folder, in the order they finished."""
    path = Path(sweep_dir) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trial results (did any trial finish?)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def swept_keys(records: list[dict[str, Any]]) -> list[str]:
    """Hyperparameters whose value differs between trials (all of them when nothing differs, e.g. one trial)."""
    keys = sorted({key for record in records for key in record["params"]})
    varying = [key for key in keys if len({json.dumps(r["params"].get(key)) for r in records}) > 1]
    return varying or keys


def ranked(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best metric first; a NaN metric (diverged trial) last."""
    return sorted(records, key=lambda r: -r["metric"] if not math.isnan(r["metric"]) else math.inf)


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits (Optuna samples 0.22721782443757294)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(records: list[dict[str, Any]], keys: list[str]) -> str:
    """The trials as a markdown table sorted by the validation metric, with the best one named above it."""
    monitor = records[0]["monitor"]
    header = ["rank", "trial", f"val {monitor}", *keys, "seconds", "parameters", "version"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, r in enumerate(ranked(records), start=1):
        cells = [rank, r["trial"], f"{r['metric']:.4f}", *(cell(r["params"].get(key, "")) for key in keys),
                 f"{r['seconds']:.1f}", f"{r['parameters']:,}", r["version_id"]]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    best = ranked(records)[0]
    intro = (f"# Sweep: {len(records)} trials of task {best['task']}\n\nBest: trial {best['trial']}, val {monitor} "
             f"{best['metric']:.4f}, model version {best['version_id']} (`{best['model']}`). Trials are registered "
             f"but not promoted: `nlp-suite models promote --id {best['version_id']}` serves the best one.\n\n")
    return intro + "\n".join(lines) + "\n"


def numeric(values: list[Any]) -> bool:
    """All values are numbers (bools are categories)."""
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_results(records: list[dict[str, Any]], keys: list[str], path: Path) -> Path:
    """Metric per trial, then metric against each swept hyperparameter (log axis for wide positive ranges)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    monitor = records[0]["monitor"]
    metrics = [r["metric"] for r in records]
    columns = min(3, 1 + len(keys))
    rows = math.ceil((1 + len(keys)) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    axes = list(axes.flat)
    for unused in axes[1 + len(keys):]:
        unused.set_visible(False)
    trial_axis = axes[0]
    trial_axis.plot([r["trial"] for r in records], metrics, marker="o", linestyle="none")
    best = ranked(records)[0]
    trial_axis.plot([best["trial"]], [best["metric"]], marker="*", markersize=14, color="tab:red", linestyle="none")
    trial_axis.set(xlabel="trial", ylabel=f"val {monitor}", title="per trial (best: star)")
    trial_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis, key in zip(axes[1:], keys):
        values = [r["params"].get(key) for r in records]
        axis.set_ylabel(f"val {monitor}")
        if numeric(values):
            axis.scatter(values, metrics)
            if all(isinstance(v, int) for v in values):
                axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers, widths: no 1.5 ticks
            positive = [v for v in values if v > 0]
            if len(positive) == len(values) and max(positive) / min(positive) >= 20:
                axis.set_xscale("log")  # e.g. learning rates spread over decades
        else:  # categories (lstm/gru, config group choices): one column each, in first-seen order
            labels = list(dict.fromkeys(str(v) for v in values))
            axis.scatter([labels.index(str(v)) for v in values], metrics)
            axis.set_xticks(range(len(labels)), labels)
        axis.set(xlabel=key)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def summarise(sweep_dir: Path | str) -> tuple[Path, Path]:
    """Write summary.md and summary.png of a sweep folder from its results.jsonl; returns both paths."""
    sweep_dir = Path(sweep_dir)
    records = load_results(sweep_dir)
    if not records:
        raise ValueError(f"{sweep_dir / RESULTS}: empty; no trial finished")
    keys = swept_keys(records)
    table = sweep_dir / TABLE
    table.write_text(markdown_table(records, keys), encoding="utf-8")
    return table, plot_results(records, keys, sweep_dir / PLOT)


class SweepSummary(Callback):
    """Hydra callback: summarise the sweep once the sweeper has run every trial."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if (sweep_dir / RESULTS).is_file():
            table, plot = summarise(sweep_dir)
            print(f"sweep summary: {table} and {plot}")


def is_override(arg: str) -> bool:
    """`key=value`, `+key=value` or `~key`, as opposed to Hydra's flags (`--cfg`) and their values (`hydra`)."""
    return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))


def hydra_argv(args: Sequence[str]) -> list[str]:
    """Hydra's command line for a sweep: multirun, folder under paths.var, logging on, the summary callback."""
    flags = [arg for arg in args if not is_override(arg)]
    overrides = [arg for arg in args if is_override(arg)]
    if not MODE_FLAGS & set(flags):  # a sweep is a multirun, unless asked for --cfg, --info, --help...
        flags.insert(0, "--multirun")
    if not any(arg.startswith("hydra.sweep.dir=") for arg in overrides):
        overrides.append(f"hydra.sweep.dir='{DEFAULT_SWEEP_DIR}'")  # quoted: the grammar rejects % unquoted
    for group in ("hydra/job_logging", "hydra/hydra_logging"):
        if not any(arg.startswith(f"{group}=") for arg in overrides):
            # conf/config.yaml silences Hydra for single runs; a sweep wants the trial list and each trial's
            # log on the console and in <sweep dir>/<trial>/sweep.log
            overrides.append(f"{group}=default")
    # Flags first: argparse cannot take overrides on both sides of `--cfg hydra`.
    return [*flags, *overrides, CALLBACK]


def main(overrides: Sequence[str] | None = None) -> None:
    """Run a sweep: `overrides` are Hydra's (default: this process's command line)."""
    from nlp_suite.env import apply_defaults

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "matplotlib", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    apply_defaults()
    # @hydra.main reads sys.argv itself; this is the only way to hand it a command line.
    sys.argv = [sys.argv[0], *hydra_argv(sys.argv[1:] if overrides is None else overrides)]
    trial()


if __name__ == "__main__":
    main()
