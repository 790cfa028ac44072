"""Model registry in `model_versions`: register candidates, promote through a gate, roll back, load active."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nlp_suite.storage.models import ModelVersion
from nlp_suite.training.checkpoint import LoadedModel, load_checkpoint

log = logging.getLogger(__name__)


class RegistryError(LookupError):
    """No such model version, or no active one for a task."""


@dataclass
class PromotionDecision:
    """Whether a candidate became active, and why."""

    promoted: bool
    reason: str


def register(session: Session, *, name: str, task: str, path: Path, sha256: str,
             metrics: dict[str, Any]) -> ModelVersion:
    """Add a candidate version."""
    version = ModelVersion(name=name, task=task, path=str(path), sha256=sha256, metrics=metrics, status="candidate")
    session.add(version)
    session.flush()
    return version


def active_version(session: Session, task: str) -> ModelVersion | None:
    """The version currently serving `task`."""
    return session.scalars(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.status == "active")
                           ).one_or_none()


def list_versions(session: Session, task: str | None = None) -> list[ModelVersion]:
    """All versions, newest first."""
    query = select(ModelVersion).order_by(ModelVersion.id.desc())
    if task:
        query = query.where(ModelVersion.task == task)
    return list(session.scalars(query))


def get_version(session: Session, version_id: int) -> ModelVersion:
    """One version by id, with a clear error."""
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise RegistryError(f"no model version with id {version_id}")
    return version


def promote(session: Session, version_id: int) -> ModelVersion:
    """Make a version active and retire the one it replaces."""
    version = get_version(session, version_id)
    current = active_version(session, version.task)
    if current is not None and current.id != version.id:
        current.status = "retired"
        session.flush()  # one active per task at every moment
    version.status = "active"
    session.flush()
    return version


def promote_if_better(session: Session, candidate: ModelVersion, monitor: str, margin: float = 0.0
                      ) -> PromotionDecision:
    """The gate: promote when there is no active version or the candidate's metric ≥ active's + margin."""
    current = active_version(session, candidate.task)
    new_value = candidate.metrics.get(monitor)
    if new_value is None:
        raise RegistryError(f"candidate {candidate.name} has no metric {monitor!r}: {sorted(candidate.metrics)}")
    if current is None:
        promote(session, candidate.id)
        return PromotionDecision(True, f"first {candidate.task} model: {monitor}={new_value:.4f}")
    old_value = current.metrics.get(monitor, float("-inf"))
    if new_value >= old_value + margin:
        promote(session, candidate.id)
        return PromotionDecision(True, f"{monitor} {new_value:.4f} >= active {old_value:.4f} + margin {margin}")
    return PromotionDecision(False, f"kept {current.name}: candidate {monitor} {new_value:.4f} < "
                                    f"active {old_value:.4f} + margin {margin}")


def rollback(session: Session, task: str) -> ModelVersion:
    """Reactivate the newest retired version older than the active one."""
    current = active_version(session, task)
    query = select(ModelVersion).where(ModelVersion.task == task, ModelVersion.status == "retired")
    if current is not None:
        query = query.where(ModelVersion.id < current.id)
    previous = session.scalars(query.order_by(ModelVersion.id.desc()).limit(1)).one_or_none()
    if previous is None:
        raise RegistryError(f"no earlier retired {task} version to roll back to")
    if current is not None:
        current.status = "candidate"  # demoted, not retired: the gate can still consider it again
        session.flush()
    return promote(session, previous.id)


def load_version(version: ModelVersion, device: str = "cpu") -> LoadedModel:
    """Load a registered version, verifying its files against the registry's sha256."""
    return load_checkpoint(Path(version.path), expected_sha256=version.sha256, device=device)


def load_active(session: Session, task: str, device: str = "cpu") -> tuple[ModelVersion, LoadedModel]:
    """The active version of `task` and its loaded model."""
    version = active_version(session, task)
    if version is None:
        raise RegistryError(f"no active {task} model; train one with `nlp-suite train task={task}`")
    return version, load_version(version, device)
