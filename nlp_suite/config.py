"""Hydra config for flows, UI, tests and the CLI: `load_config(["db=postgres", "train.epochs=2"])`."""
from __future__ import annotations

from typing import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from nlp_suite.paths import conf_dir, resolve


class ConfigError(ValueError):
    """The configuration cannot be used as given."""


def load_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides, resolve it, and make paths absolute."""
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="nlp_suite"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    # Paths in conf are project-relative; make them absolute once so flows run from any folder.
    for key in ("var", "models", "shared_data"):
        cfg.paths[key] = str(resolve(cfg.paths[key]))
    try:
        OmegaConf.resolve(cfg)
    except InterpolationResolutionError as error:
        hint = " (db=postgres reads NLP_SUITE_DB_URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/nlp_suite)"
        raise ConfigError(f"cannot resolve the config: {error}{hint if 'NLP_SUITE_DB_URL' in str(error) else ''}") from None
    return cfg


def db_url(cfg: DictConfig) -> str:
    """SQLAlchemy URL of the configured database."""
    if not cfg.db.url:
        raise ConfigError("db.url is empty; set NLP_SUITE_DB_URL with db=postgres, or pass db.url=...")
    return str(cfg.db.url)
