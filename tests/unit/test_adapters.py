"""Houlsby adapters on the shared encoder: identity at start, the only encoder weights trained when frozen,
saved and reloaded with the model, and added on top of a pretrained encoder that never had them."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch

from nlp_suite.config import db_url, load_config
from nlp_suite.models.encoder import Encoder, EncoderConfig
from nlp_suite.models.heads import EncoderWithHead, PoolingClassifierHead
from nlp_suite.storage import migrate
from nlp_suite.tasks.classification import TextClassifier
from nlp_suite.tasks.sentiment import SentimentTask
from nlp_suite.text.batching import pad_batch
from nlp_suite.text.tokenizer import TextTokenizer
from nlp_suite.training.checkpoint import MANIFEST, load_checkpoint, save_checkpoint
from nlp_suite.training.loop import FitConfig, fit, set_encoder_frozen
from nlp_suite.training.train import train

LABELS = ["negative", "neutral", "positive"]
WORDS = {"negative": ["plunge", "warning", "fined", "layoffs"], "neutral": ["meeting", "names", "moves", "updates"],
         "positive": ["beats", "record", "upgraded", "wins"]}
PROBES = ["Acme plunge today", "Globex record again", "Initech meeting in q3", "Acme"]


def labelled_rows(rows: int = 240, seed: int = 0) -> tuple[list[str], list[str]]:
    """Headlines whose verb gives the label away: learnable in one tiny epoch."""
    rng = random.Random(seed)
    labels = [rng.choice(LABELS) for _ in range(rows)]
    texts = [f"{rng.choice(['Acme', 'Globex', 'Initech'])} {rng.choice(WORDS[label])} "
             f"{rng.choice(['today', 'again', 'in q3'])}" for label in labels]
    return texts, labels


def tiny_task(adapter_dim: int) -> tuple[SentimentTask, TextTokenizer, EncoderWithHead]:
    """A prepared sentiment task and a fresh model on a 16-wide encoder."""
    texts, labels = labelled_rows()
    task = SentimentTask(name="sentiment", labels=LABELS, head_hidden=16)
    data = task.labelled_data(texts, labels, val_fraction=0.25, seed=0)
    tokenizer = TextTokenizer.train(texts, 200)
    task.prepare(data, tokenizer, 16)
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=tokenizer.vocab_size, embed_dim=16, hidden_dim=16, num_layers=2,
                           dropout=0.0, adapter_dim=adapter_dim)
    return task, tokenizer, task.build_model(Encoder(config))


def probabilities(model, task: SentimentTask, tokenizer: TextTokenizer) -> np.ndarray:
    """(N, C) class probabilities of the probe texts."""
    return TextClassifier(model, tokenizer, task.labels, 16).predict_proba(PROBES)


@pytest.fixture(scope="module")
def frozen_run():
    """One epoch with the encoder frozen throughout (-1) and 4-wide adapters: weights before, after, result."""
    task, tokenizer, model = tiny_task(adapter_dim=4)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    result = fit(model, task, FitConfig(epochs=1, batch_size=16, lr=1e-2, freeze_encoder_epochs=-1, progress=False,
                                        device="cpu"))
    return task, tokenizer, model, before, result


@pytest.mark.parametrize("bidirectional,layers", [(True, 2), (False, 1)])
def test_new_adapters_leave_the_encoder_outputs_unchanged(bidirectional, layers):
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(vocab_size=40, embed_dim=8, hidden_dim=6, num_layers=layers,
                                    bidirectional=bidirectional, dropout=0.1)).eval()
    ids, lengths = pad_batch([[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]])
    plain, mask = encoder(ids, lengths)
    plain_state = encoder.state_dict()
    encoder.add_adapters(4)
    assert encoder.config.adapter_dim == 4 and len(encoder.adapters()) == 1 + (2 if bidirectional else 1)
    torch.testing.assert_close(encoder(ids, lengths)[0], plain, rtol=0, atol=0)
    # The same holds for an encoder built with adapters and given the adapter-free weights.
    built = Encoder(encoder.config).eval()
    keys = built.load_state_dict(plain_state, strict=False)
    assert keys.missing_keys and all("adapter" in key for key in keys.missing_keys) and not keys.unexpected_keys
    torch.testing.assert_close(built(ids, lengths)[0], plain, rtol=0, atol=0)
    # A trained (non-zero) adapter changes real states only: padding stays exactly zero.
    torch.nn.init.normal_(encoder.adapters()[-1].up.weight)
    torch.nn.init.normal_(encoder.adapters()[-1].up.bias)
    changed, _ = encoder(ids, lengths)
    assert not torch.allclose(changed, plain) and torch.all(changed[~mask] == 0)


def test_output_adapters_keep_the_forward_direction_causal():
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(vocab_size=40, embed_dim=8, hidden_dim=6, adapter_dim=4, dropout=0.0)).eval()
    for adapter in encoder.adapters():
        torch.nn.init.normal_(adapter.up.weight)
    first, _ = encoder(*pad_batch([[3, 4, 5, 6]]))
    second, _ = encoder(*pad_batch([[3, 4, 9, 9]]))  # same prefix, different future
    torch.testing.assert_close(first[0, :2, :6], second[0, :2, :6])  # forward half up to t=1 sees no future


def test_frozen_encoder_trains_only_adapters_and_head(frozen_run):
    _, _, model, before, result = frozen_run
    after = model.state_dict()
    adapter_keys = {name for name in after if "adapter" in name}
    assert adapter_keys and after.keys() == before.keys()
    for name, value in after.items():
        if name.startswith("encoder.") and name not in adapter_keys:
            torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=f"{name} moved while frozen")
        else:
            assert not torch.equal(value, before[name]), f"{name} did not train"
    trainable = sum(p.numel() for name, p in model.named_parameters()
                    if not name.startswith("encoder.") or "adapter" in name)
    assert result.trainable_share == pytest.approx(trainable / sum(p.numel() for p in model.parameters()))


def test_trainable_share_is_small_on_a_realistic_shape():
    config = EncoderConfig(vocab_size=8000, embed_dim=128, hidden_dim=256, num_layers=2, adapter_dim=16)  # lstm_lm
    encoder = Encoder(config)
    model = EncoderWithHead(encoder, PoolingClassifierHead(encoder, num_classes=3))
    head_only = EncoderWithHead(Encoder(EncoderConfig(**{**config.to_dict(), "adapter_dim": 0})),
                                PoolingClassifierHead(encoder, num_classes=3))
    share = set_encoder_frozen(model, frozen=True)
    assert set_encoder_frozen(head_only, frozen=True) < share < 0.2
    assert set_encoder_frozen(model, frozen=False) == 1.0


def test_adapters_are_saved_and_reloaded_with_identical_predictions(frozen_run, tmp_path):
    task, tokenizer, model, _, _ = frozen_run
    save_checkpoint(tmp_path, model, task, {"name": "sentiment", "labels": LABELS, "head_hidden": 16}, tokenizer,
                    model.encoder.config, 16, metrics={})
    loaded = load_checkpoint(tmp_path)
    assert loaded.manifest["encoder"]["adapter_dim"] == 4
    assert any("adapter" in name for name in loaded.model.state_dict())
    np.testing.assert_array_equal(probabilities(loaded.model, loaded.task, loaded.tokenizer),
                                  probabilities(model, task, tokenizer))


def write_old_checkpoint(directory) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """A model folder as code before adapters wrote it (no `adapter_dim` in the manifest); its predictions."""
    task, tokenizer, model = tiny_task(adapter_dim=0)
    fit(model, task, FitConfig(epochs=1, batch_size=16, lr=1e-2, progress=False, device="cpu"))
    save_checkpoint(directory, model, task, {"name": "sentiment", "labels": LABELS, "head_hidden": 16}, tokenizer,
                    model.encoder.config, 16, metrics={})
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    del manifest["encoder"]["adapter_dim"]
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return probabilities(model, task, tokenizer), model.encoder.state_dict()


def test_an_old_checkpoint_loads_and_fine_tunes_with_adapters_added(tmp_path):
    old = tmp_path / "old-model"
    expected, encoder_state = write_old_checkpoint(old)
    loaded = load_checkpoint(old)
    assert loaded.model.encoder.config.adapter_dim == 0 and not loaded.model.encoder.adapters()
    np.testing.assert_array_equal(probabilities(loaded.model, loaded.task, loaded.tokenizer), expected)

    data = tmp_path / "labelled.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(*labelled_rows(seed=1)))
    cfg = load_config([f"paths.var={tmp_path}", f"data.sentiment.path={data}", f"model.pretrained={old}",
                       "model.adapter_dim=8", "train=finetune", "train.epochs=1", "train.freeze_encoder_epochs=-1",
                       "train.progress=false", "train.device=cpu"])
    migrate.upgrade(db_url(cfg))
    result = train(cfg)
    tuned = load_checkpoint(result.path)
    assert tuned.manifest["encoder"]["adapter_dim"] == 8 and len(tuned.model.encoder.adapters()) == 3
    tuned_state = tuned.model.encoder.state_dict()
    for name, value in encoder_state.items():  # the pretrained weights stay exactly as they were
        torch.testing.assert_close(tuned_state[name], value, rtol=0, atol=0)
    assert any(not torch.all(tuned_state[name] == 0) for name in tuned_state if name.endswith("up.weight"))
    assert 0 < result.metrics["trainable_share"] < 0.5
