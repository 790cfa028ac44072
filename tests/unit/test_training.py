"""train(cfg) end to end on a tiny labelled file; checkpoint round trip, tamper refusal, promotion gate."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import torch
import pytest
from safetensors.torch import load_file, save_file

from nlp_suite.config import db_url, load_config
from nlp_suite.storage import migrate
from nlp_suite.storage.session import session_scope
from nlp_suite.tasks.classification import TextClassifier
from nlp_suite.training import registry
from nlp_suite.training.checkpoint import CheckpointError, load_checkpoint
from nlp_suite.training.train import train

WORDS = {"negative": ["plunge", "warning", "fined", "layoffs", "downgraded"],
         "neutral": ["meeting", "names", "schedules", "moves", "updates"],
         "positive": ["beats", "record", "upgraded", "dividend", "wins"]}


def write_labelled_csv(path, rows=300, seed=0):
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "published_at", "text", "label"])
        for i in range(rows):
            label = rng.choice(list(WORDS))
            text = f"{rng.choice(['Acme', 'Globex', 'Initech'])} {rng.choice(WORDS[label])} {rng.choice(['today', 'again', 'in q3'])}"
            writer.writerow([i, "2026-10-01T00:00:00Z", text, label])


@pytest.fixture
def cfg_factory(tmp_path):
    data = tmp_path / "labelled.csv"
    write_labelled_csv(data)

    def make(*extra):
        cfg = load_config([f"paths.var={tmp_path}", f"data.sentiment.path={data}", "train.epochs=3",
                           "model.vocab_size=300", *extra])
        migrate.upgrade(db_url(cfg))
        return cfg

    return make


def test_train_registers_a_working_model_and_round_trips(cfg_factory):
    cfg = cfg_factory()
    result = train(cfg)
    assert result.promoted and result.metrics["accuracy"] > 0.9
    with session_scope(db_url(cfg)) as session:
        version, loaded = registry.load_active(session, "sentiment")
    assert version.id == result.version_id
    manifest = json.loads(open(f"{result.path}/model.json", encoding="utf-8").read())
    assert manifest["task"]["state"]["labels"] == ["negative", "neutral", "positive"]
    texts = ["Acme plunge today", "Globex record again", "Initech meeting in q3"]
    first = TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len).predict_proba(texts)
    again = load_checkpoint(result.path)
    second = TextClassifier(again.model, again.tokenizer, again.task.labels, again.max_len).predict_proba(texts)
    np.testing.assert_array_equal(first, second)
    assert [loaded.task.labels[i] for i in first.argmax(1)] == ["negative", "positive", "neutral"]


def test_tampered_weights_and_manifest_are_refused(cfg_factory, tmp_path):
    cfg = cfg_factory()
    result = train(cfg)
    weights = f"{result.path}/model.safetensors"
    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + 1.0
    save_file(state, weights)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(result.path)
    manifest_path = f"{result.path}/model.json"
    manifest = json.load(open(manifest_path))
    manifest["task"]["target"] = "os.system"
    json.dump(manifest, open(manifest_path, "w"))
    with session_scope(db_url(cfg)) as session:
        with pytest.raises(CheckpointError, match="registry"):
            registry.load_active(session, "sentiment")
    with pytest.raises(CheckpointError):
        load_checkpoint(result.path)


def test_promotion_gate_keeps_the_better_model_and_rollback(cfg_factory):
    cfg = cfg_factory()
    first = train(cfg)
    with session_scope(db_url(cfg)) as session:
        worse = registry.register(session, name="sentiment-worse", task="sentiment", path=first.path,
                                  sha256="0" * 64, metrics={"macro_f1": first.metrics["macro_f1"] - 0.2})
        decision = registry.promote_if_better(session, worse, "macro_f1")
        assert not decision.promoted and "kept" in decision.reason
        assert registry.active_version(session, "sentiment").id == first.version_id
        better = registry.register(session, name="sentiment-better", task="sentiment", path=first.path,
                                   sha256="0" * 64, metrics={"macro_f1": 1.01})
        assert registry.promote_if_better(session, better, "macro_f1", margin=0.005).promoted
        assert registry.get_version(session, first.version_id).status == "retired"
        assert registry.rollback(session, "sentiment").id == first.version_id
        assert registry.active_version(session, "sentiment").id == first.version_id


def test_unknown_label_and_missing_file_are_clear_errors(cfg_factory, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nAcme fell,bearish\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bearish"):
        train(cfg_factory(f"data.sentiment.path={bad}"))
    with pytest.raises(FileNotFoundError, match="data.sentiment.path"):
        train(cfg_factory(f"data.sentiment.path={tmp_path / 'nope.csv'}"))


def test_epoch_rows_time_training_and_validation_and_the_hook_stays_outside(cfg_factory):
    import time

    seen = []

    def hook(row):
        seen.append(dict(row))
        time.sleep(0.3)  # e.g. the benchmark timing a bare LSTM; must not count as training time

    start = time.perf_counter()
    result = train(cfg_factory(), on_epoch_end=hook)
    wall = time.perf_counter() - start
    assert [row["epoch"] for row in seen] == [row["epoch"] for row in result.history] == [1, 2, 3]
    for row in result.history:
        assert row["train_seconds"] > 0 and row["val_seconds"] > 0
        # padded positions >= real tokens; both per second of training steps only
        assert row["train_positions_per_second"] >= row["train_tokens_per_second"] > 0
        assert 1 <= row["mean_padded_length"] <= 64
    assert result.seconds <= wall - 0.9 * 0.3 * len(seen)
    assert result.seconds >= sum(row["train_seconds"] + row["val_seconds"] for row in result.history)


NO_AVX512 = pytest.mark.skipif(not torch.cpu._is_avx512_supported(),
                               reason="this CPU has no AVX-512: oneDNN has no bf16 LSTM kernel here")


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=NO_AVX512)])
def test_training_precision_learns_and_saves_fp32_weights(cfg_factory, precision):
    result = train(cfg_factory(f"train.precision={precision}"))
    assert result.metrics["accuracy"] > 0.9
    weights = load_file(f"{result.path}/model.safetensors")
    assert weights and all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())


def test_autocast_dtype_choices_and_errors(monkeypatch):
    from nlp_suite.models.precision import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("fp32", cpu) is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: True)
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: False)
    with pytest.raises(ValueError, match="bf16 needs a CPU with AVX-512"):
        autocast_dtype("bf16", cpu)
    assert autocast_dtype("bf16", cuda) == torch.bfloat16  # the CPU's ISA does not matter on CUDA
    assert autocast_dtype("auto", cuda) == torch.float16
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ValueError, match="auto, fp32, bf16 or fp16"):
        autocast_dtype("half", cpu)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert autocast_dtype("auto", cpu) is None  # no native bf16: emulated bf16 would be slower than fp32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert autocast_dtype("auto", cpu) == torch.bfloat16


def test_clip_gradients_matches_clip_grad_norm_and_skips_the_multiply_below_the_limit():
    from torch import nn

    from nlp_suite.training.loop import clip_gradients

    def model_with_grads(scale: float) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
        (model(torch.randn(5, 4)).sum() * scale).backward()
        return model

    for scale in (100.0, 1e-3):  # above and below the limit
        ours, reference = model_with_grads(scale), model_with_grads(scale)
        before = [p.grad.clone() for p in ours.parameters()]
        norm = clip_gradients(ours, 1.0)
        expected = nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        assert torch.allclose(norm, expected)
        for mine, theirs in zip(ours.parameters(), reference.parameters()):
            assert torch.allclose(mine.grad, theirs.grad, rtol=1e-5, atol=1e-7)
        if scale < 1:  # untouched, not multiplied by a clamped 1.0
            assert all(torch.equal(p.grad, b) for p, b in zip(ours.parameters(), before))
        else:
            total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in ours.parameters()]))
            assert abs(float(total) - 1.0) < 1e-4


def test_weight_average_is_an_exponential_moving_average_with_warm_up():
    from nlp_suite.training.averaging import WeightAverage, ema_decay

    assert ema_decay(0.5, 200) == pytest.approx(0.99)  # memory of 100 steps = half an epoch
    with pytest.raises(ValueError, match="ema_epochs"):
        ema_decay(0.0, 200)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[1].weight.requires_grad_(False)
    frozen = model[1].weight.detach().clone()
    average = WeightAverage(model, decay=0.9)
    expected = model[0].weight.detach().clone()
    for step in range(1, 40):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        average.update(model)
        decay = min(0.9, (1 + step) / (10 + step))  # warm-up first, then the configured decay
        expected = decay * expected + (1 - decay) * model[0].weight
    torch.testing.assert_close(average.model[0].weight, expected)
    assert (average.model[0].weight < model[0].weight).all()  # it lags a moving target
    torch.testing.assert_close(average.model[1].weight, frozen)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_ema_keeps_the_average_and_leaves_the_raw_trajectory_alone(cfg_factory):
    plain = train(cfg_factory("train.patience=10"))
    averaged = train(cfg_factory("train.patience=10", "train.ema_epochs=0.5"))
    assert len(plain.history) == len(averaged.history) == 3
    for before, after in zip(plain.history, averaged.history):
        # Same seed, and the average draws no random numbers: the raw weights train exactly as without it.
        assert after["train_loss"] == pytest.approx(before["train_loss"], rel=1e-6)
        assert after["raw_macro_f1"] == pytest.approx(before["macro_f1"])
    assert any(row["macro_f1"] != row["raw_macro_f1"] for row in averaged.history)  # what is judged is the average
    best = max(averaged.history, key=lambda row: row["macro_f1"])
    assert averaged.metrics["macro_f1"] == pytest.approx(best["macro_f1"])  # ... and what is kept
    assert averaged.metrics["accuracy"] > 0.9
    weights = load_checkpoint(averaged.path).model.state_dict()
    reference = load_checkpoint(plain.path).model.state_dict()
    assert any(not torch.equal(weights[name], reference[name]) for name in reference)


def test_the_students_start_does_not_depend_on_random_numbers_drawn_before_it(cfg_factory, monkeypatch):
    from nlp_suite.tasks.sentiment import SentimentTask

    first = train(cfg_factory("train.epochs=1"))
    load_data = SentimentTask.load_data

    def load_data_drawing_random_numbers(self, cfg):  # as fine-tuning a teacher does (dropout, shuffling)
        torch.rand(1000)
        return load_data(self, cfg)

    monkeypatch.setattr(SentimentTask, "load_data", load_data_drawing_random_numbers)
    second = train(cfg_factory("train.epochs=1"))
    before, after = load_file(f"{first.path}/model.safetensors"), load_file(f"{second.path}/model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
