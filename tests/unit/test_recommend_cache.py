"""Persistent item-vector cache of the nightly recommendation batch: reuse, refresh, isolation, corruption."""
from __future__ import annotations

import copy
import json
import logging
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy import select, update

from nlp_suite import pipeline
from nlp_suite.config import db_url, load_config
from nlp_suite.data.catalog import load_catalog
from nlp_suite.recommend.batch import (CACHE_INDEX, ItemVectorCache, model_fingerprint, recommend_all,
                                       users_for_new_item)
from nlp_suite.storage import migrate
from nlp_suite.storage.models import Item, ModelVersion, Recommendation
from nlp_suite.storage.session import session_scope
from nlp_suite.training.checkpoint import LoadedModel, sha256_file
from tests.unit.test_recommend import NOW, tiny_task_and_model, write_catalog

ITEMS = 28  # the fixture catalog of tests.unit.test_recommend


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained tiny two-tower model: vectors only have to be deterministic, not good."""
    folder = tmp_path_factory.mktemp("cache-model")
    task, net, tokenizer, _ = tiny_task_and_model(folder)
    return LoadedModel(model=net.eval(), task=task, tokenizer=tokenizer, manifest={"max_len": 16})


@pytest.fixture(scope="module")
def catalog_files(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("cache-catalog"))


@pytest.fixture
def url(tmp_path, catalog_files):
    """A fresh SQLite database holding the fixture catalog."""
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    migrate.upgrade(url)
    load_catalog(url, *catalog_files)
    return url


def run(url: str, loaded: LoadedModel, cache_dir: Path | None):
    return recommend_all(url, loaded, None, top_k=3, now=NOW, cache_dir=cache_dir)


def rows_of(url: str, run_id: int) -> list[tuple]:
    with session_scope(url) as session:
        return [tuple(row) for row in session.execute(
            select(Recommendation.user_id, Recommendation.item_id, Recommendation.rank, Recommendation.score,
                   Recommendation.components).where(Recommendation.run_id == run_id)
            .order_by(Recommendation.user_id, Recommendation.rank))]


def cache_folder(cache_dir: Path) -> Path:
    (folder,) = [path for path in cache_dir.iterdir() if path.is_dir()]
    return folder


def test_second_run_computes_no_vectors(url, model, tmp_path):
    cache_dir = tmp_path / "vectors"
    first = run(url, model, cache_dir)
    assert (first.vectors_computed, first.vectors_reused) == (ITEMS, 0)
    second = run(url, model, cache_dir)
    assert (second.vectors_computed, second.vectors_reused) == (0, ITEMS)
    labels = list(second.as_table().columns[0].cells)
    assert "item vectors reused" in labels and "item vectors computed" in labels
    folder = cache_folder(cache_dir)
    assert folder.name == model_fingerprint(model)[:32]
    index = json.loads((folder / CACHE_INDEX).read_text())
    assert len(index["items"]) == ITEMS and index["shape"] == [ITEMS, model.model.dim]
    assert len(list(folder.glob("vectors-*.safetensors"))) == 1


def test_changed_or_new_item_is_the_only_one_recomputed(url, model, tmp_path):
    cache_dir = tmp_path / "vectors"
    run(url, model, cache_dir)
    with session_scope(url) as session:
        session.execute(update(Item).where(Item.external_id == "tr0").values(title="Reykjavik by night"))
    changed = run(url, model, cache_dir)
    assert (changed.vectors_computed, changed.vectors_reused) == (1, ITEMS - 1)
    with session_scope(url) as session:
        session.add(Item(external_id="new1", title="Vinyl record care", category="music", created_at=NOW))
    added = run(url, model, cache_dir)
    assert (added.vectors_computed, added.vectors_reused) == (1, ITEMS)
    assert run(url, model, cache_dir).vectors_computed == 0
    index = json.loads((cache_folder(cache_dir) / CACHE_INDEX).read_text())
    assert len(index["items"]) == ITEMS + 1  # one entry per item id: the old text's vector was dropped


def test_another_model_does_not_reuse_the_cache(url, model, tmp_path):
    cache_dir = tmp_path / "vectors"
    run(url, model, cache_dir)
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.model.item_tower.parameters()).add_(0.01)  # same shapes, different weights
    assert model_fingerprint(other) != model_fingerprint(model)
    assert run(url, other, cache_dir).vectors_computed == ITEMS
    assert len([path for path in cache_dir.iterdir() if path.is_dir()]) == 2  # one folder per model
    assert run(url, model, cache_dir).vectors_computed == 0  # the first model's cache is untouched


def _flip_bytes(folder: Path) -> None:
    (vectors,) = folder.glob("vectors-*.safetensors")
    data = bytearray(vectors.read_bytes())
    data[-8:] = bytes(8)
    vectors.write_bytes(bytes(data))


def _garbage_index(folder: Path) -> None:
    (folder / CACHE_INDEX).write_text("{not json", encoding="utf-8")


def _rewrite_vectors(folder: Path, write) -> None:
    """Replace the vectors file by `write(path)` and make the index's sha256 agree, as a tamperer would."""
    index = json.loads((folder / CACHE_INDEX).read_text())
    path = folder / index["file"]
    write(path)
    index["sha256"] = sha256_file(path)
    (folder / CACHE_INDEX).write_text(json.dumps(index), encoding="utf-8")


def _wrong_shape(folder: Path) -> None:
    _rewrite_vectors(folder, lambda path: save_file({"vectors": torch.zeros(3, 5)}, str(path)))


class Boom:
    """Fails the test if anything ever unpickles it."""

    def __reduce__(self):
        return (pytest.fail, ("the cache was unpickled",))


def _pickle_file(folder: Path) -> None:
    _rewrite_vectors(folder, lambda path: path.write_bytes(pickle.dumps(Boom())))


def _missing_vectors(folder: Path) -> None:
    for path in folder.glob("vectors-*.safetensors"):
        path.unlink()


@pytest.mark.parametrize("damage", [_flip_bytes, _garbage_index, _wrong_shape, _pickle_file, _missing_vectors])
def test_corrupted_cache_is_rebuilt_with_a_warning(url, model, tmp_path, caplog, damage):
    cache_dir = tmp_path / "vectors"
    clean = run(url, model, cache_dir)
    damage(cache_folder(cache_dir))
    with caplog.at_level(logging.WARNING, logger="nlp_suite.recommend.batch"):
        rebuilt = run(url, model, cache_dir)
    assert "unusable" in caplog.text and "rebuilding" in caplog.text
    assert rebuilt.vectors_computed == ITEMS
    assert rows_of(url, rebuilt.run_id) == rows_of(url, clean.run_id)
    assert run(url, model, cache_dir).vectors_computed == 0  # the rebuilt cache is good again


def test_results_identical_with_and_without_cache(url, model, tmp_path):
    cache_dir = tmp_path / "vectors"
    plain = run(url, model, None)
    cold = run(url, model, cache_dir)
    warm = run(url, model, cache_dir)
    assert warm.vectors_computed == 0
    assert rows_of(url, plain.run_id) == rows_of(url, cold.run_id) == rows_of(url, warm.run_id)
    assert len(rows_of(url, plain.run_id)) == 24 * 3


def test_in_memory_cache_writes_nothing(model):
    cache = ItemVectorCache(model)
    first = cache.vectors(["a guide", "b guide", "a guide"], ["a", "b", "c"])
    assert (cache.computed, cache.reused, len(cache)) == (2, 1, 2)
    assert torch.equal(first[0], first[2]) and not cache.save()
    with pytest.raises(ValueError, match="item ids"):
        cache.vectors(["x"], ["1", "2"])


def test_a_callers_empty_cache_is_filled_and_reused_by_cold_start(url, model):
    cache = ItemVectorCache(model)  # empty, hence falsy: it must still be the one used
    users_for_new_item(url, model, "Vinyl jazz piano lesson", cache=cache)
    users_for_new_item(url, model, "Sourdough pizza night", cache=cache)
    assert (cache.computed, cache.reused) == (ITEMS, ITEMS)  # the catalog was encoded once for both calls


def test_pipeline_recommend_reads_the_cache_dir_from_config(tmp_path, model, catalog_files, monkeypatch):
    cfg = load_config([f"paths.var={tmp_path}"])
    assert cfg.recommend.cache_dir == f"{tmp_path}/cache/item_vectors"
    url = db_url(cfg)
    migrate.upgrade(url)
    load_catalog(url, *catalog_files)
    with session_scope(url) as session:
        version = ModelVersion(name="recommend-test", task="recommend", path="/m", sha256="0" * 64, status="active")
        session.add(version)
        session.flush()
        version_id = version.id
    monkeypatch.setattr(pipeline, "active_model", lambda cfg, task: (type("V", (), {"id": version_id}), model))
    assert pipeline.recommend(cfg).vectors_computed == ITEMS
    assert pipeline.recommend(cfg).vectors_computed == 0
    index = json.loads((cache_folder(tmp_path / "cache" / "item_vectors") / CACHE_INDEX).read_text())
    assert index["model_version_id"] == version_id

    off = load_config([f"paths.var={tmp_path / 'off'}", "recommend.cache_dir=null"])
    off.db.url = url
    assert pipeline.recommend(off).vectors_computed == ITEMS
    assert not (tmp_path / "off").exists()
