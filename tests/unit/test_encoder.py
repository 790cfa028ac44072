"""Encoder shapes and masking, packing vs. single sequences, pooling, batching, tokenizer."""
from __future__ import annotations

import pytest
import torch

from nlp_suite.models.encoder import Encoder, EncoderConfig
from nlp_suite.models.pooling import ConcatPooling
from nlp_suite.text.batching import bucketed_batches, pad_batch, pad_waste
from nlp_suite.text.tokenizer import TextTokenizer


@pytest.mark.parametrize("rnn,bidirectional,layers", [("lstm", True, 1), ("lstm", False, 2), ("gru", True, 2)])
def test_encoder_shapes_and_mask(rnn, bidirectional, layers):
    encoder = Encoder(EncoderConfig(vocab_size=30, embed_dim=8, hidden_dim=6, num_layers=layers,
                                    bidirectional=bidirectional, rnn=rnn)).eval()
    ids, lengths = pad_batch([[1, 2, 3, 4], [5, 6], [7]])
    states, mask = encoder(ids, lengths)
    assert states.shape == (3, 4, encoder.output_dim)
    assert encoder.output_dim == 6 * (2 if bidirectional else 1)
    assert mask.tolist() == [[True] * 4, [True, True, False, False], [True, False, False, False]]
    assert torch.all(states[~mask] == 0)  # padded steps carry no state


def test_training_output_dropout_is_locked_over_time_and_keeps_padding_zero():
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(vocab_size=30, embed_dim=8, hidden_dim=16, dropout=0.5)).train()
    ids, lengths = pad_batch([[1, 2, 3, 4, 5], [6, 7, 8], [9]])
    states, mask = encoder(ids, lengths)
    assert torch.all(states[~mask] == 0)
    for row, length in enumerate(lengths.tolist()):
        zero = states[row, :length] == 0  # (length, H): a dropped feature is zero at every real step of its text
        assert torch.equal(zero.all(dim=0), zero.any(dim=0))
        assert zero.all(dim=0).any() and not zero.all()  # p=0.5 over 32 features: some dropped, not all


def test_padded_batch_equals_each_sequence_alone():
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(vocab_size=40, embed_dim=8, hidden_dim=5, num_layers=2)).eval()
    pool = ConcatPooling(5, bidirectional=True)
    sequences = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    ids, lengths = pad_batch(sequences)
    batched = pool(*encoder(ids, lengths))
    for row, sequence in enumerate(sequences):
        alone = pool(*encoder(*pad_batch([sequence])))
        torch.testing.assert_close(batched[row], alone[0], atol=1e-6, rtol=1e-5)


def test_encoder_is_stateless_between_calls():
    encoder = Encoder(EncoderConfig(vocab_size=20)).eval()
    ids, lengths = pad_batch([[1, 2, 3]])
    first, _ = encoder(ids, lengths)
    encoder(*pad_batch([[4, 5, 6, 7, 8]]))
    again, _ = encoder(ids, lengths)
    torch.testing.assert_close(first, again)


def test_concat_pooling_values():
    states = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [0.0, 0.0]]])  # (1, 3, 2): one direction of width 1 each
    mask = torch.tensor([[True, True, False]])
    pooled = ConcatPooling(hidden_dim=1, bidirectional=True)(states, mask)
    # last = [forward at t=1, backward at t=0]; max and mean over the two real steps only
    assert pooled.tolist() == [[3.0, 10.0, 3.0, 30.0, 2.0, 20.0]]


def test_bucketing_cuts_padding_and_covers_every_index():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (2000,), generator=generator).tolist()
    batches = bucketed_batches(lengths, 32, shuffle=True, generator=generator)
    assert sorted(i for batch in batches for i in batch) == list(range(2000))
    random_batches = [list(range(i, min(i + 32, 2000))) for i in range(0, 2000, 32)]
    assert pad_waste(batches, lengths) <= 0.10 < pad_waste(random_batches, lengths)


def test_tokenizer_trains_round_trips_and_never_returns_empty():
    texts = ["Shares of Contoso plunge after profit warning", "Fabrikam beats estimates", "record revenue"] * 20
    tokenizer = TextTokenizer.train(texts, vocab_size=200, min_frequency=1)
    assert tokenizer.pad_id == 0
    restored = TextTokenizer.from_json(tokenizer.to_json())
    assert restored.encode(texts[:3], 16) == tokenizer.encode(texts[:3], 16)
    assert all(len(ids) >= 1 for ids in tokenizer.encode(["", "   ", "zzzzqqq"], 8))
    assert len(tokenizer.encode(["word " * 100], 10)[0]) == 10


def test_tokenizer_training_is_reproducible_across_processes():
    import subprocess
    import sys

    code = ("from nlp_suite.text.tokenizer import TextTokenizer; import hashlib; "
            "texts = [f'{a} {b}ing {c}s' for a in ('acme', 'globex', 'contoso') for b in ('plung', 'rall', 'slid') "
            "for c in ('share', 'bond', 'note')] * 3; "
            "print(hashlib.sha256(TextTokenizer.train(texts, 120, 1).to_json().encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
               for _ in range(3)}
    assert len(digests) == 1


def test_reverse_padded_reverses_within_length_only():
    from nlp_suite.models.encoder import reverse_padded

    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])[:, :, None]
    assert reverse_padded(x, torch.tensor([3, 2]))[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]
    # Float states with gradients: reversing twice is the identity and every position gets its gradient back.
    states = torch.randn(3, 5, 4, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    twice = reverse_padded(reverse_padded(states, lengths), lengths)
    assert torch.equal(twice, states)
    (twice * 3).sum().backward()
    assert torch.equal(states.grad, torch.full_like(states, 3.0))


def test_reverse_padded_backward_matches_the_generic_row_selection():
    from nlp_suite.models.encoder import reversal_index, reverse_padded

    # The backward reuses the forward's index (the reversal is an involution); check it against autograd's own
    # index_select backward and with gradcheck.
    states = torch.randn(4, 6, 3, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([6, 1, 3, 5])
    weights = torch.randn(4, 6, 3, dtype=torch.double)
    (reverse_padded(states, lengths) * weights).sum().backward()
    ours, states.grad = states.grad, None
    index = reversal_index(lengths, 6)
    (states.reshape(-1, 3).index_select(0, index).view_as(states) * weights).sum().backward()
    assert torch.equal(ours, states.grad)
    assert torch.autograd.gradcheck(lambda x: reverse_padded(x, lengths), (states,))


def test_each_direction_only_sees_its_own_side_even_when_stacked():
    """Language-model pretraining needs the forward states blind to the future and backward to the past."""
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(vocab_size=50, embed_dim=8, hidden_dim=6, num_layers=3)).eval()
    ids, lengths = pad_batch([[5, 6, 7, 8, 9, 10]])
    changed = ids.clone()
    changed[0, 4] = 42  # change token 4
    before, _ = encoder(ids, lengths)
    after, _ = encoder(changed, lengths)
    torch.testing.assert_close(before[0, :4, :6], after[0, :4, :6])  # forward states before t=4: unchanged
    torch.testing.assert_close(before[0, 5:, 6:], after[0, 5:, 6:])  # backward states after t=4: unchanged
    assert not torch.allclose(before[0, 4:, :6], after[0, 4:, :6])


def test_weight_and_embedding_dropout_act_in_training_only():
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(vocab_size=30, embed_dim=8, hidden_dim=6, dropout=0.0, weight_dropout=0.5,
                                    embed_dropout=0.3))
    ids, lengths = pad_batch([[1, 2, 3, 4, 5, 6]])
    encoder.train()
    first, second = encoder(ids, lengths)[0], encoder(ids, lengths)[0]
    assert not torch.allclose(first, second)
    encoder.eval()
    torch.testing.assert_close(encoder(ids, lengths)[0], encoder(ids, lengths)[0])
    raw = [name for name, _ in encoder.named_parameters() if name.endswith("_raw")]
    assert raw and all("weight_hh" in name for name in raw)


def test_attention_pooling_weights_sum_to_one_over_real_tokens():
    from nlp_suite.models.pooling import build_pooling

    pool = build_pooling("concat_attention", hidden_dim=3, bidirectional=True, states_dim=6)
    states = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    assert pool(states, mask).shape == (2, 24)
    torch.testing.assert_close(pool.last_weights.sum(1), torch.ones(2))
    assert pool.last_weights[0, 3] == 0 and pool.last_weights[1, 1:].sum() == 0
