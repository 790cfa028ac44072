"""Small helpers shared by test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import socket

import torch


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_single_threaded(cfg):
    """train(cfg) on one torch thread: tiny test models train faster, and far faster on a busy 2-core box."""
    from nlp_suite.training.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg)
    finally:
        torch.set_num_threads(threads)
