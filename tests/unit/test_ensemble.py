"""train.ensemble: several classifiers from different seeds, saved, registered and served as one model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nlp_suite.config import db_url
from nlp_suite.models.encoder import Encoder, EncoderConfig
from nlp_suite.models.ensemble import Ensemble, ensemble_members
from nlp_suite.models.heads import EncoderWithHead, PoolingClassifierHead
from nlp_suite.storage.session import session_scope
from nlp_suite.tasks.classification import TextClassifier
from nlp_suite.training import registry
from nlp_suite.training.checkpoint import CheckpointError, load_checkpoint
from tests.helpers import train_single_threaded
from tests.unit import test_training

cfg_factory = test_training.cfg_factory  # the tiny labelled-file config of test_training, as a fixture here too
TEXTS = ["Acme plunge today", "Globex record again", "Initech meeting in q3", "Acme dividend in q3"]


def classifier(seed: int, classes: int = 3, pooling: str = "concat") -> EncoderWithHead:
    torch.manual_seed(seed)
    encoder = Encoder(EncoderConfig(vocab_size=50, embed_dim=8, hidden_dim=8, num_layers=1))
    return EncoderWithHead(encoder, PoolingClassifierHead(encoder, classes, hidden_dim=8, pooling=pooling)).eval()


def test_ensemble_output_is_the_log_of_the_members_mean_probabilities():
    members = [classifier(seed) for seed in range(3)]
    ids, lengths = torch.randint(1, 50, (4, 6)), torch.tensor([6, 5, 3, 1])
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(ids, lengths), dim=1) for m in members]).mean(dim=0)
        combined = Ensemble(members)(ids, lengths)
    assert torch.allclose(torch.softmax(combined, dim=1), mean, atol=1e-6)
    assert torch.allclose(combined.exp().sum(dim=1), torch.ones(4), atol=1e-5)  # already normalised
    assert ensemble_members(Ensemble(members)) == members
    assert ensemble_members(members[0]) == [members[0]]
    with pytest.raises(ValueError, match="at least 2 members"):
        Ensemble(members[:1])


# fp32: `auto` picks bf16 on AMX/AVX512-BF16 CPUs, where a few epochs of this tiny task may not learn
TINY = ("train.precision=fp32", "train.progress=false")


def test_trained_ensemble_is_saved_registered_and_served_as_one_model(cfg_factory):
    cfg = cfg_factory("train.ensemble=3", *TINY)
    result = train_single_threaded(cfg)
    assert result.metrics["ensemble_size"] == 3 and result.promoted
    manifest = json.loads(open(f"{result.path}/model.json", encoding="utf-8").read())
    assert manifest["ensemble_size"] == 3
    rows = manifest["ensemble"]["members"]
    assert [row["member"] for row in rows] == [0, 1, 2]
    assert all(0.0 <= row["val"]["accuracy"] <= 1.0 and row["epochs_run"] >= 1 for row in rows)
    assert {row["member"] for row in manifest["history"]} == {0, 1, 2}  # one curve per member
    # Members start from different seeds, so their weights differ.
    weights = load_file(f"{result.path}/model.safetensors")
    assert not torch.equal(weights["members.0.encoder.embedding.weight"], weights["members.1.encoder.embedding.weight"])

    with session_scope(db_url(cfg)) as session:
        version, loaded = registry.load_active(session, "sentiment")
    assert version.id == result.version_id and isinstance(loaded.model, Ensemble)
    labels = list(loaded.task.labels)
    served = TextClassifier(loaded.model, loaded.tokenizer, labels, loaded.max_len)
    separate = [TextClassifier(m, loaded.tokenizer, labels, loaded.max_len).predict_proba(TEXTS)
                for m in loaded.model.members]
    np.testing.assert_allclose(served.predict_proba(TEXTS), np.mean(separate, axis=0), atol=1e-5)
    assert result.metrics["accuracy"] > 0.9
    # The registered metrics are the ensemble's own validation scores, the ones the promotion gate compared.
    assert manifest["metrics"]["accuracy"] == pytest.approx(result.metrics["accuracy"])
    probabilities, pooled = served.predict_with_features(TEXTS)
    np.testing.assert_allclose(probabilities, served.predict_proba(TEXTS), atol=1e-5)
    single = loaded.model.members[0].head.pool.output_dim(loaded.model.members[0].encoder.output_dim)
    assert pooled.shape == (len(TEXTS), 3 * single)


def test_a_manifest_claiming_another_ensemble_size_is_refused(cfg_factory):
    result = train_single_threaded(cfg_factory("train.ensemble=2", "train.epochs=1", *TINY))
    manifest = json.loads(open(f"{result.path}/model.json", encoding="utf-8").read())
    for size, message in ((3, "weights do not fit"), (0, "not a positive integer"), ("2", "not a positive integer")):
        manifest["ensemble_size"] = size
        open(f"{result.path}/model.json", "w", encoding="utf-8").write(json.dumps(manifest))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(result.path)


def test_ensemble_setting_is_checked_before_any_training(cfg_factory):
    with pytest.raises(ValueError, match="positive integer"):
        train_single_threaded(cfg_factory("train.ensemble=0", *TINY))
    with pytest.raises(ValueError, match="task 'lm'.*does not output class probabilities"):
        train_single_threaded(cfg_factory("task=lm", "train.ensemble=2", *TINY))


def test_explanations_average_the_members_attention():
    members = [classifier(seed, pooling="attention") for seed in range(2)]

    class Tokens:  # the smallest tokenizer TextClassifier needs: fixed ids, a vocabulary to name them
        pad_id = 0

        def encode(self, texts, max_len):
            return [[3, 4, 5] for _ in texts]

        class tokenizer:  # noqa: N801 - mirrors TextTokenizer.tokenizer (the HF object)
            @staticmethod
            def id_to_token(i):
                return f"t{i}"

    served = TextClassifier(Ensemble(members), Tokens(), ["a", "b", "c"], 16)
    explained = served.explain("anything")
    singles = [TextClassifier(m, Tokens(), ["a", "b", "c"], 16).explain("anything") for m in members]
    assert [t for t, _ in explained] == ["t3", "t4", "t5"]
    expected = np.mean([[w for _, w in s] for s in singles], axis=0)
    np.testing.assert_allclose([w for _, w in explained], expected, atol=1e-6)
    assert sum(w for _, w in explained) == pytest.approx(1.0, abs=1e-5)
