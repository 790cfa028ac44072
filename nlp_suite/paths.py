"""Where the project's own folders live (conf/, db/, flows/), overridable for installed copies."""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """Repository root: NLP_SUITE_ROOT, else the folder above the package (editable install)."""
    return Path(os.environ.get("NLP_SUITE_ROOT", Path(__file__).resolve().parents[1]))


def conf_dir() -> Path:
    """Hydra config folder."""
    return project_root() / "conf"


def alembic_ini() -> Path:
    """Alembic config of the migrations in db/."""
    return project_root() / "db" / "alembic.ini"


def resolve(path: str | os.PathLike) -> Path:
    """A config path made absolute against the project root (relative paths in conf are project-relative)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (project_root() / path).resolve()
