"""train.freeze_embeddings: the token embeddings stay exactly as they started while the rest of the model trains."""
from __future__ import annotations

import pytest
import torch

from nlp_suite.training.loop import FitConfig, fit
from tests.unit.test_adapters import tiny_task


def test_frozen_embeddings_stay_while_everything_else_trains():
    task, _, model = tiny_task(adapter_dim=0)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    # fp32: `auto` picks bf16 on CPUs with AMX/AVX512-BF16, and two bf16 epochs on this tiny task may not learn
    result = fit(model, task, FitConfig(epochs=2, batch_size=16, lr=1e-2, freeze_embeddings=True, progress=False,
                                        device="cpu", precision="fp32"))
    after = model.state_dict()
    torch.testing.assert_close(after["encoder.embedding.weight"], before["encoder.embedding.weight"], rtol=0, atol=0)
    moved = [name for name in after if name != "encoder.embedding.weight" and not torch.equal(after[name], before[name])]
    assert any(name.startswith("encoder.forward_rnn") for name in moved) and any(n.startswith("head.") for n in moved)
    embedding = model.encoder.embedding.weight.numel()
    assert result.trainable_share == pytest.approx(1 - embedding / sum(p.numel() for p in model.parameters()))
    assert all(p.requires_grad for p in model.parameters())  # fit leaves the model fully trainable again
    assert result.best_metrics["accuracy"] > 0.5  # three labels: it learned with the embeddings fixed
