"""Teacher backbones: the split all-mpnet-base-v2 zip is joined, unpacked safely and sha256-checked; clear errors."""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from nlp_suite.models import backbones


class FakeFile:
    """What importlib.metadata lists for a distribution's file: a name and where it lies."""

    def __init__(self, path: Path):
        self.path, self.name = path, path.name

    def locate(self) -> Path:
        return self.path


def fake_parts(tmp_path: Path, weights: bytes) -> dict[str, list[FakeFile]]:
    """The upstream-style zip (with a desktop.ini and a path that tries to escape) split over five 'packages'."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/model.safetensors", weights)
        archive.writestr("all-mpnet-base-v2/config.json", "{}")
        archive.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        archive.writestr("all-mpnet-base-v2/desktop.ini", "[.ShellClassInfo]")
        archive.writestr("all-mpnet-base-v2/../escaped.txt", "no")
    blob = buffer.getvalue()
    size = len(blob) // 5 + 1
    parts = {}
    for i, name in enumerate(backbones.MPNET_PARTS):
        piece = tmp_path / "site" / name / f"all-mpnet-base-v2.zip.00{i + 1}"
        piece.parent.mkdir(parents=True)
        piece.write_bytes(blob[i * size:(i + 1) * size])
        parts[name] = [FakeFile(piece.parent / "__init__.py"), FakeFile(piece)]
    return parts


def test_mpnet_parts_are_joined_once_unpacked_without_junk_and_checked(tmp_path, monkeypatch):
    weights = b"not really a model, but bytes with a known sha256"
    parts = fake_parts(tmp_path, weights)
    monkeypatch.setattr(backbones, "_distribution_files", lambda name: parts.get(name))
    monkeypatch.setattr(backbones, "MPNET_SHA256", hashlib.sha256(weights).hexdigest())
    folder = backbones.mpnet_folder(tmp_path / "cache")
    assert (folder / "model.safetensors").read_bytes() == weights
    assert (folder / "1_Pooling" / "config.json").exists()
    assert not list(folder.rglob("desktop.ini"))
    assert not list(tmp_path.rglob("escaped.txt"))  # nothing is written outside the folder
    assert sorted(p.name for p in folder.parent.iterdir()) == ["all-mpnet-base-v2"]  # no partial files left
    # Unpacked and verified: a second call needs no packages.
    monkeypatch.setattr(backbones, "_distribution_files", lambda name: None)
    assert backbones.mpnet_folder(tmp_path / "cache") == folder


def test_mpnet_weights_with_another_sha256_are_refused(tmp_path, monkeypatch):
    parts = fake_parts(tmp_path, b"tampered weights")
    monkeypatch.setattr(backbones, "_distribution_files", lambda name: parts.get(name))
    with pytest.raises(RuntimeError, match="refusing to load them"):
        backbones.mpnet_folder(tmp_path / "cache")
    assert not (tmp_path / "cache" / "backbones" / "all-mpnet-base-v2").exists()


def test_unavailable_backbones_say_how_to_fix_it(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec  # sentence-transformers counts as installed: the checks after it are tested
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "sentence_transformers"
                        else real(name, *a))
    monkeypatch.setattr(backbones, "_distribution_files", lambda name: None)
    assert "teacher-mpnet" in backbones.backbone_available("mpnet")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    assert "no model.safetensors" in backbones.backbone_available("local", str(tmp_path))
    assert "needs distill.teacher_dir" in backbones.backbone_available("local")
    assert "unknown backbone" in backbones.backbone_available("gpt")


def test_without_sentence_transformers_every_backbone_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers"
                        else real(name, *a))
    assert "[peer]" in backbones.backbone_available("mpnet")
    with pytest.raises(RuntimeError, match="the minilm teacher backbone is unavailable"):
        backbones.load_sentence_model("minilm", "cpu", Path("unused"))
