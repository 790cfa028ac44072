"""Inference copies of trained models: weight-drop folded away, optionally dynamic int8."""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from nlp_suite.models.encoder import DropConnectRNN


def for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy where every DropConnectRNN is replaced by its plain RNN holding the trained weights.

    DropConnect keeps the trained hidden-to-hidden weights as `*_raw` parameters and only writes them into the RNN
    during forward, so tools that copy the RNN's own weights (quantization, export) would otherwise see stale ones.
    """
    for module in model.modules():
        if isinstance(module, DropConnectRNN):
            # After a training forward the RNN holds the dropped weights as non-leaf tensors of the autograd graph,
            # which deepcopy refuses; they are rewritten on every forward, so detached raw copies are as good.
            for name in module.names:
                setattr(module.rnn, name, getattr(module, f"{name}_raw").detach())
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, DropConnectRNN):
                for name in child.names:
                    delattr(child.rnn, name)
                    child.rnn.register_parameter(name, nn.Parameter(getattr(child, f"{name}_raw").detach().clone()))
                child.rnn.flatten_parameters()
                setattr(parent, child_name, child.rnn)
    return model


def quantize_int8(model: nn.Module, *, rnn: bool = True) -> nn.Module:
    """Dynamic int8 copy (weights int8, activations quantized per batch) of the LSTM/GRU and Linear layers."""
    layers = {nn.Linear} | ({nn.LSTM, nn.GRU} if rnn else set())
    with warnings.catch_warnings():  # torch.ao eager quantization is deprecated in favour of torchao (not a dep)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(for_inference(model), layers, dtype=torch.qint8)
