"""Multi-task mode: seeded mixed-batch schedule, one training run over sentiment + reply, checkpoint round trip,
and exporting one sub-task as a normal single-task model."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nlp_suite.config import db_url, load_config
from nlp_suite.data.sample import write_sample_data
from nlp_suite.storage import migrate
from nlp_suite.storage.session import session_scope
from nlp_suite.tasks.classification import TextClassifier
from nlp_suite.tasks.multitask import MultiTask, export_subtask
from nlp_suite.tasks.reply import ReplyTask
from nlp_suite.tasks.sentiment import SentimentTask
from nlp_suite.text.tokenizer import TextTokenizer
from nlp_suite.training import registry
from nlp_suite.training.checkpoint import load_checkpoint
from nlp_suite.training.train import build_task
from tests.helpers import train_single_threaded

TINY = ["model.vocab_size=400", "model.embed_dim=32", "model.hidden_dim=32", "model.max_len=32", "train.lr=1e-2",
        "train.epochs=3", "train.progress=false"]
TEXTS = ["Acme shares plunge after profit warning", "Globex beats estimates and raises dividend",
         "How do I reset my password?", "What time do you open on Saturday?"]


@pytest.fixture(scope="module")
def var(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multitask")
    write_sample_data(folder / "sample", seed=0)
    return folder


def multitask_config(var, *extra):
    cfg = load_config(["task=multitask", f"paths.var={var}", f"data.dir={var}/sample", *TINY, *extra])
    migrate.upgrade(db_url(cfg))
    return cfg


def prepared_task(cfg) -> MultiTask:
    task, _ = build_task(cfg)
    data = task.load_data(cfg)
    task.prepare(data, TextTokenizer.train(task.corpus(data), cfg.model.vocab_size), cfg.model.max_len)
    return task


@pytest.fixture(scope="module")
def trained(var):
    return train_single_threaded(multitask_config(var))


def schedule_of(task: MultiTask, seed: int) -> list[str]:
    """Sub-task name of every batch of one shuffled training epoch."""
    generator = torch.Generator().manual_seed(seed)
    return [task.names[int(batch["task"])] for batch in task.batches("train", 32, shuffle=True, generator=generator)]


def test_config_composes_the_single_task_configs(var):
    task, params = build_task(multitask_config(var))
    assert task.names == ["reply", "sentiment"]
    assert isinstance(task.subtasks["sentiment"], SentimentTask) and isinstance(task.subtasks["reply"], ReplyTask)
    assert params["tasks"]["sentiment"]["labels"] == ["negative", "neutral", "positive"]  # from task/sentiment.yaml


def test_an_epoch_interleaves_every_sub_task_batch_once_in_a_seeded_order(var):
    task = prepared_task(multitask_config(var))
    counts = {name: task.batch_count(name, "train", 32) for name in task.names}
    assert all(count > 1 for count in counts.values())
    order = schedule_of(task, seed=0)
    assert Counter(order) == counts  # proportional: each sub-task's share is its share of the batches
    assert schedule_of(task, seed=0) == order and schedule_of(task, seed=1) != order
    half = Counter(order[: len(order) // 2])  # mixed over the epoch, not one sub-task's block after another
    assert all(0 < half[name] < counts[name] for name in task.names)
    steps = sum(1 for _ in task.batches("train", 32, shuffle=False))  # what the loop sizes its schedule with
    assert steps == len(order)
    for batch in task.batches("train", 32, shuffle=True, generator=torch.Generator().manual_seed(0)):
        labels = task.subtasks[task.names[int(batch["task"])]].labels
        assert batch["task"].shape == () and int(batch["targets"].max()) < len(labels)


def test_temperature_sampling_draws_sub_tasks_by_tempered_batch_counts():
    task = MultiTask({"sentiment": {"_target_": "nlp_suite.tasks.sentiment.SentimentTask", "name": "sentiment"}},
                     temperature=2.0)
    generator = torch.Generator().manual_seed(0)
    draws = [k for _ in range(50) for k in task.schedule([90, 10], shuffle=True, generator=generator)]
    expected = 90 ** 0.5 / (90 ** 0.5 + 10 ** 0.5)  # p_k ∝ n_k^(1/T): 0.75 instead of 0.9
    assert len(draws) == 50 * 100
    assert abs(draws.count(0) / len(draws) - expected) < 0.03


def test_training_reports_every_sub_task_and_registers_one_model(var, trained):
    metrics = trained.metrics
    for name in ("sentiment", "reply"):
        assert {f"{name}/accuracy", f"{name}/macro_f1"} <= set(metrics)
    assert metrics["mean_monitor"] == pytest.approx((metrics["sentiment/macro_f1"] + metrics["reply/macro_f1"]) / 2)
    assert all("sentiment/macro_f1" in row and "reply/macro_f1" in row for row in trained.history)
    assert metrics["sentiment/accuracy"] > 0.6 and metrics["reply/accuracy"] > 0.3  # chance: 0.33 and 0.08
    assert trained.task == "multitask" and trained.promoted
    with session_scope(db_url(multitask_config(var))) as session:
        assert registry.active_version(session, "multitask").id == trained.version_id
    keys = load_file(f"{trained.path}/model.safetensors")
    assert not [key for key in keys if ".encoder." in key]  # the shared encoder is stored once
    assert any(key.startswith("heads.reply.") for key in keys) and any(key.startswith("encoder.") for key in keys)


def test_a_saved_multitask_model_loads_with_identical_predictions(var, trained):
    first, second = load_checkpoint(trained.path), load_checkpoint(trained.path)
    for name in ("sentiment", "reply"):
        predictions = [TextClassifier(loaded.model.heads[name], loaded.tokenizer, loaded.task.subtasks[name].labels,
                                      loaded.max_len).predict_proba(TEXTS) for loaded in (first, second)]
        np.testing.assert_array_equal(*predictions)
    # Same validation metrics as the trained model's best epoch: the weights and label maps round-tripped.
    cfg = multitask_config(var)
    first.task.prepare(first.task.load_data(cfg), first.tokenizer, first.max_len)
    again = first.task.evaluate(first.model, "val")
    assert again == pytest.approx({key: trained.metrics[key] for key in again})
    # The reply thresholds saved are the ones tuned at the epoch whose weights were kept (chosen by the mean monitor,
    # not by the reply head's own metric): tuning again on the saved weights picks exactly them.
    reply = first.task.subtasks["reply"]
    assert reply.tuned and reply._candidate == reply.tuned


def test_one_sub_task_exports_as_a_normal_single_task_model(trained, tmp_path):
    multitask = load_checkpoint(trained.path)
    export_subtask(trained.path, "sentiment", tmp_path / "sentiment")
    single = load_checkpoint(tmp_path / "sentiment")
    assert isinstance(single.task, SentimentTask) and single.manifest["monitor"] == "macro_f1"
    assert single.manifest["metrics"]["accuracy"] == trained.metrics["sentiment/accuracy"]
    labels = single.task.labels
    exported = TextClassifier(single.model, single.tokenizer, labels, single.max_len).predict_proba(TEXTS)
    inside = TextClassifier(multitask.model.heads["sentiment"], multitask.tokenizer, labels,
                            multitask.max_len).predict_proba(TEXTS)
    np.testing.assert_array_equal(exported, inside)
