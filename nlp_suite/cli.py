"""`nlp-suite <command> [hydra overrides]`: the command-line edge; all work happens in nlp_suite and flows/."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from nlp_suite.env import apply_defaults

EPILOG = ("Trailing arguments are Hydra overrides, e.g. `db=postgres`, `train.epochs=3`, `data=headlines`, "
          "`task=reply`. See conf/ for every option.")

STAGES = {
    "ingest": ("flows.ingest", "ingest", "Validate and store the configured documents; quarantine bad rows."),
    "pretrain": ("flows.train", "train", "Pretrain the shared encoder as a language model on unlabelled text "
                 "(task=lm model=lstm_lm train=pretrain; resumable)."),
    "train": ("flows.train", "train", "Train the configured task (task=sentiment|reply|recommend) and register it."),
    "finetune": ("flows.train", "train", "ULMFiT-style fine-tuning of the active pretrained LM for the configured "
                 "task (train=finetune model.pretrained=active: discriminative lr, gradual unfreezing)."),
    "distill": ("flows.train", "train", "Train the configured task as a student of a fine-tuned transformer "
                "teacher (distill=minilm, extra [peer]; distill=mpnet, stronger, extra [teacher-mpnet]): soft "
                "targets on labelled + unlabelled transfer texts."),
    "score": ("flows.score", "score", "Score unscored documents with the active sentiment model."),
    "alerts": ("flows.alerts", "alerts", "Raise negative-spike alerts per watched entity."),
    "recommend": ("flows.recommend", "recommend", "Write top-K recommendations for every user."),
    "replay": ("flows.replay", "replay", "Replay timestamped files as a stream (data=headlines_replay "
               "replay.speed=N): ingest, score and alert step by step; list the alerts raised."),
}

PRESETS = {"pretrain": ["task=lm", "model=lstm_lm", "train=pretrain"],
           "finetune": ["train=finetune", "model.pretrained=active"],
           "distill": ["distill=minilm"]}


def _flow(module: str, name: str) -> Callable:
    """Import a flow from flows/ (the project root is put on sys.path first)."""
    import importlib

    from nlp_suite.paths import project_root

    root = str(project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return getattr(importlib.import_module(module), name)


def run_stage(args: argparse.Namespace) -> int:
    """Run one pipeline flow through Prefect."""
    module, name, _ = STAGES[args.command]
    defaults = PRESETS.get(args.command, [])
    _flow(module, name)(defaults + list(args.overrides))  # the user's overrides come last and win
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """The whole pipeline, then the Gradio app unless --no-serve."""
    _flow("flows.demo", "demo")(args.overrides)
    if args.no_serve:
        return 0
    return run_serve(args)


def run_serve(args: argparse.Namespace) -> int:
    """Serve the Gradio app (chat + monitoring) until interrupted."""
    from nlp_suite.config import load_config
    from nlp_suite.ui.app import launch

    cfg = load_config(args.overrides)
    print(f"Serving the nlp-suite app on http://{cfg.ui.host}:{cfg.ui.port} (Ctrl+C to stop)")
    launch(cfg, block=True)
    return 0


def run_sample(args: argparse.Namespace) -> int:
    """Write the embedded sample corpus."""
    from pathlib import Path

    from nlp_suite.config import load_config
    from nlp_suite.data.sample import write_sample_data

    cfg = load_config(args.overrides)
    files = write_sample_data(Path(cfg.data.dir), seed=int(cfg.data.seed))
    print(f"sample data written to {cfg.data.dir}: {files}")
    return 0


def run_db(args: argparse.Namespace) -> int:
    """Alembic migrations against the configured database."""
    from nlp_suite.config import db_url, load_config
    from nlp_suite.storage import migrate

    url = db_url(load_config(args.overrides))
    shown = url.split("@")[-1]
    if args.action == "upgrade":
        print(f"database {shown}: upgraded to {migrate.upgrade(url, args.revision or 'head')}")
    elif args.action == "downgrade":
        print(f"database {shown}: downgraded to {migrate.downgrade(url, args.revision or 'base')}")
    else:
        print(f"database {shown}: at {migrate.current(url)} (head {migrate.head()})")
    return 0


def run_models(args: argparse.Namespace) -> int:
    """List, show, promote or roll back registered model versions."""
    import json

    from rich.console import Console
    from rich.table import Table

    from nlp_suite.config import db_url, load_config
    from nlp_suite.storage.session import session_scope
    from nlp_suite.training import registry

    url = db_url(load_config(args.overrides))
    with session_scope(url) as session:
        if args.action == "list":
            table = Table(title="model versions")
            for column in ("id", "task", "name", "status", "metrics", "created"):
                table.add_column(column)
            for v in registry.list_versions(session, args.task):
                shown = " ".join(f"{k}={v.metrics[k]:.3f}" for k in ("accuracy", "macro_f1", "ndcg@10")
                                 if k in v.metrics)
                table.add_row(str(v.id), v.task, v.name, v.status, shown, f"{v.created_at:%Y-%m-%d %H:%M}")
            Console(width=max(Console().width, 140)).print(table)
        elif args.action == "show":
            v = registry.get_version(session, args.id)
            print(json.dumps({"id": v.id, "name": v.name, "task": v.task, "status": v.status, "path": v.path,
                              "sha256": v.sha256, "metrics": v.metrics}, indent=2))
        elif args.action == "promote":
            v = registry.promote(session, args.id)
            print(f"{v.name} is now the active {v.task} model")
        elif args.action == "rollback":
            v = registry.rollback(session, args.task)
            print(f"rolled back: {v.name} is now the active {v.task} model")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """Hyperparameter search (Hydra multirun of train), or re-summarise a finished sweep folder."""
    from nlp_suite import sweep

    if args.summarise:
        table, plot = sweep.summarise(args.summarise)
        print(f"sweep summary: {table} and {plot}")
        return 0
    sweep.main(args.overrides)
    return 0


def run_serve_flows(args: argparse.Namespace) -> int:
    """Serve scheduled deployments (needs PREFECT_API_URL of a running `prefect server start`)."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        print("serve-flows needs a Prefect server for schedules: run `prefect server start --host 127.0.0.1` "
              "and export PREFECT_API_URL=http://127.0.0.1:4200/api", file=sys.stderr)
        return 2
    _flow("flows.deployments", "serve_all")(args.overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Subcommands with --help each."""
    parser = argparse.ArgumentParser(prog="nlp-suite", description="nlp-suite: one shared LSTM encoder for chat, "
                                     "financial opinion monitoring and recommendation.", epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, help_text: str, handler: Callable) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG)
        p.set_defaults(handler=handler)
        return p

    for name, (_, _, help_text) in STAGES.items():
        command(name, help_text, run_stage).add_argument("overrides", nargs="*", help="Hydra overrides")
    demo = command("demo", "Run ingest → train → score → alerts → recommend, then serve the app.", run_demo)
    demo.add_argument("--no-serve", action="store_true", help="stop after the pipeline")
    demo.add_argument("overrides", nargs="*", help="Hydra overrides")
    command("serve", "Serve the Gradio app (chat and monitoring).", run_serve).add_argument(
        "overrides", nargs="*", help="Hydra overrides")
    command("sample", "Write the embedded sample corpus to data.dir.", run_sample).add_argument(
        "overrides", nargs="*", help="Hydra overrides")
    db = command("db", "Database migrations: upgrade | downgrade | current.", run_db)
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("--revision", help="target revision (default: head for upgrade, base for downgrade)")
    db.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. db=postgres")
    models = command("models", "Model registry: list | show ID | promote ID | rollback TASK.", run_models)
    models.add_argument("action", choices=["list", "show", "promote", "rollback"])
    models.add_argument("--id", type=int, help="model version id (show, promote)")
    models.add_argument("--task", help="task name (list filter, rollback)")
    models.add_argument("overrides", nargs="*", help="Hydra overrides")
    command("serve-flows", "Serve the scheduled Prefect deployments from conf/deploy.", run_serve_flows
            ).add_argument("overrides", nargs="*", help="Hydra overrides")
    sweep = command("sweep", "Hyperparameter search: one registered (never promoted) model per trial, e.g. "
                    "`model.hidden_dim=64,128 model.rnn=lstm,gru` or `+hparams_search=sentiment` (Optuna); "
                    "writes results.jsonl, summary.md and summary.png under paths.var/sweeps/.", run_sweep)
    sweep.add_argument("--summarise", metavar="SWEEP_DIR", help="only rewrite summary.md/png of a sweep folder")
    sweep.add_argument("overrides", nargs="*", help="Hydra overrides and sweeps (comma lists, +hparams_search=...)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nlp-suite` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "matplotlib", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    apply_defaults()
    if args.command == "models" and args.action in ("show", "promote") and args.id is None:
        print(f"models {args.action} needs --id", file=sys.stderr)
        return 2
    if args.command == "models" and args.action == "rollback" and not args.task:
        print("models rollback needs --task", file=sys.stderr)
        return 2
    from hydra.errors import HydraException

    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, LookupError, FileNotFoundError, RuntimeError, HydraException) as error:
        # Known, user-fixable problems: one clear line, no traceback (use -v for one).
        if args.verbose:
            raise
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
