"""Language-model pretraining on the sample corpus, fine-tuning from it, and resuming an interrupted run."""
from __future__ import annotations

import pytest
import torch

from nlp_suite.config import db_url, load_config
from nlp_suite.data.sample import write_sample_data
from nlp_suite.storage import migrate
from nlp_suite.training.checkpoint import load_checkpoint
from nlp_suite.training.loop import FitConfig, fit
from nlp_suite.training.train import build_task, train
from nlp_suite.text.tokenizer import TextTokenizer

TINY = ["model.embed_dim=32", "model.hidden_dim=32", "model.vocab_size=400", "model.num_layers=2", "train.lr=1e-2",
        "model.dropout=0.0", "model.weight_dropout=0.1", "model.embed_dropout=0.0"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    var = tmp_path_factory.mktemp("pretrain")
    write_sample_data(var / "sample", seed=0)
    return var


def lm_config(var, *extra):
    sources = f"task.sources=[{{kind:csv,path:'{var}/sample/headlines.csv',column:text}},{{kind:faq,path:'{var}/sample/faq.jsonl'}}]"
    cfg = load_config(["task=lm", "model=lstm_lm", "train=pretrain", f"paths.var={var}", f"data.dir={var}/sample",
                       sources, "task.seq_len=16", "train.epochs=3", "train.progress=false", *TINY, *extra])
    migrate.upgrade(db_url(cfg))
    return cfg


@pytest.fixture(scope="module")
def pretrained(sample):
    return train(lm_config(sample))


def test_pretraining_learns_and_registers_a_language_model(pretrained):
    assert pretrained.task == "lm" and pretrained.promoted
    assert [row["epoch"] for row in pretrained.history] == [1, 2, 3]
    vocabulary = load_checkpoint(pretrained.path).tokenizer.vocab_size
    assert pretrained.metrics["perplexity"] < vocabulary / 4  # far better than a uniform guess
    assert pretrained.history[2]["perplexity"] < pretrained.history[0]["perplexity"]


def test_fine_tuning_reuses_the_pretrained_tokenizer_and_encoder(sample, pretrained):
    lm = load_checkpoint(pretrained.path)
    cfg = load_config([f"paths.var={sample}", f"data.dir={sample}/sample", f"model.pretrained={pretrained.path}",
                       "train=finetune", "train.epochs=3", "train.freeze_encoder_epochs=-1", "train.progress=false"])
    result = train(cfg)
    tuned = load_checkpoint(result.path)
    assert tuned.tokenizer.to_json() == lm.tokenizer.to_json()
    assert tuned.manifest["pretrained_from"] == pretrained.path
    # Parameter-efficient mode: the encoder stays exactly the pretrained one; only the head learned.
    for name, value in lm.model.encoder.state_dict().items():
        torch.testing.assert_close(tuned.model.encoder.state_dict()[name], value)
    assert 0 < result.metrics["trainable_share"] < 0.5
    assert result.metrics["accuracy"] > 0.6


@pytest.mark.parametrize("ema_epochs", [0.0, 0.5])
def test_an_interrupted_run_resumes_to_the_same_weights(sample, tmp_path, ema_epochs):
    cfg = lm_config(sample, "task.max_documents=300")

    def prepared():
        task, _ = build_task(cfg)
        data = task.load_data(cfg)
        tokenizer = TextTokenizer.train(task.corpus(data), 400)
        task.prepare(data, tokenizer, 64)
        from nlp_suite.models.encoder import Encoder
        from nlp_suite.training.train import encoder_config

        torch.manual_seed(0)
        return task, task.build_model(Encoder(encoder_config(cfg, tokenizer.vocab_size)))

    # With a weight average, what is kept (and compared) is the average, which the resume files also carry.
    settings = dict(epochs=2, batch_size=16, lr=3e-3, progress=False, checkpoint_every=3, ema_epochs=ema_epochs)
    task, model = prepared()
    fit(model, task, FitConfig(**settings))
    expected = model.state_dict()

    task, model = prepared()
    original_loss, calls = task.loss, {"n": 0}

    def crash_after_some_steps(m, batch):
        calls["n"] += 1
        if calls["n"] == 8:  # mid-epoch, after a save at step 6
            raise KeyboardInterrupt("simulated interruption")
        return original_loss(m, batch)

    task.loss = crash_after_some_steps
    with pytest.raises(KeyboardInterrupt):
        fit(model, task, FitConfig(**settings, resume_dir=str(tmp_path / "resume")))
    task, model = prepared()
    resumed = fit(model, task, FitConfig(**settings, resume_dir=str(tmp_path / "resume")))
    assert all(0 < row["train_loss"] < 10 for row in resumed.history)  # a mean per batch, not a sum
    for name, value in expected.items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert not (tmp_path / "resume" / "resume.json").exists()  # cleared once finished
