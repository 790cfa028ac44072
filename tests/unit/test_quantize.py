"""Inference copies: DropConnect folded away gives identical outputs; dynamic int8 stays close."""
from __future__ import annotations

import torch
from torch import nn

from nlp_suite.models.encoder import DropConnectRNN, Encoder, EncoderConfig
from nlp_suite.models.pooling import ConcatPooling
from nlp_suite.models.quantize import for_inference, quantize_int8
from nlp_suite.text.batching import pad_batch


class Pooled(nn.Module):
    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder, self.pool = encoder, ConcatPooling(encoder.config.hidden_dim, bidirectional=True)
        self.out = nn.Linear(3 * encoder.output_dim, 3)

    def forward(self, ids, lengths):
        return self.out(self.pool(*self.encoder(ids, lengths)))


def trained_like_model() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A weight-dropped model after some training steps and a reload, as the registry hands it out."""
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, embed_dim=16, hidden_dim=16, weight_dropout=0.5, dropout=0.0)
    model = Pooled(Encoder(config))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    batch = pad_batch([[1, 2, 3, 4, 5], [6, 7, 8], [9, 10, 11, 12]])
    for _ in range(5):
        model.train()
        optimizer.zero_grad()
        model(*batch).sum().backward()
        optimizer.step()
    reloaded = Pooled(Encoder(config))
    reloaded.load_state_dict(model.state_dict())  # the RNN's own weight_hh is still its random init here
    return reloaded.eval(), batch


def test_folded_copy_has_no_dropconnect_and_identical_outputs():
    model, batch = trained_like_model()
    folded = for_inference(model)
    assert not any(isinstance(module, DropConnectRNN) for module in folded.modules())
    assert any(isinstance(module, DropConnectRNN) for module in model.modules())  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(*batch), model(*batch))


def test_int8_copy_uses_the_trained_recurrent_weights():
    model, batch = trained_like_model()
    quantized = quantize_int8(model)
    quantized_kinds = {type(m).__name__ for m in quantized.modules() if ".quantized.dynamic." in type(m).__module__}
    assert {"LSTM", "Linear"} <= quantized_kinds
    with torch.no_grad():
        expected, got = model(*batch), quantized(*batch)
    assert (got - expected).abs().max() <= 0.01 * expected.abs().max(), (got, expected)


def test_scoring_precision_is_checked():
    import pytest

    from nlp_suite.pipeline import inference_model

    model, _ = trained_like_model()
    assert not any(isinstance(m, DropConnectRNN) for m in inference_model(model, "fp32").modules())
    with pytest.raises(ValueError, match="fp32 or int8"):
        inference_model(model, "fp16")


def test_a_model_straight_from_training_can_be_folded():
    """No reload in between: the RNN still holds the dropped weights of the last training step (autograd tensors)."""
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, embed_dim=16, hidden_dim=16, weight_dropout=0.5, dropout=0.0)
    model, batch = Pooled(Encoder(config)), pad_batch([[1, 2, 3], [4, 5]])
    model.train()
    model(*batch).sum().backward()
    model.eval()
    with torch.no_grad():
        expected = model(*batch)
        assert torch.allclose(for_inference(model)(*batch), expected, atol=1e-6)
        assert torch.allclose(quantize_int8(model)(*batch), expected, atol=0.1)
