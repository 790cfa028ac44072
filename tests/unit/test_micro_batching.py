"""Micro-batching: concurrent callers share forward passes and each gets exactly its own rows."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nlp_suite.chat.batching import MicroBatcher


class SlowEcho:
    """Probability rows that encode the text (so mix-ups show), slow enough for requests to pile up."""

    labels = ["a", "b"]

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def predict_proba(self, texts):
        self.batch_sizes.append(len(texts))
        time.sleep(0.05)
        if any(text == "boom" for text in texts):
            raise RuntimeError("model failed")
        values = np.array([float(text.split("-")[1]) for text in texts])
        return np.stack([values, -values], axis=1)


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    model = SlowEcho()
    batcher = MicroBatcher(model, max_batch=64)
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(16)

    def ask(number: int) -> None:
        barrier.wait()
        results[number] = batcher.predict_proba([f"t-{number}", f"t-{number + 100}"])

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for number, rows in results.items():
        assert rows.tolist() == [[number, -number], [number + 100, -(number + 100)]]
    assert len(model.batch_sizes) < 16 and max(model.batch_sizes) > 2  # shared forwards, not one per caller
    assert sum(model.batch_sizes) == 32 and batcher.requests == 16
    assert batcher.labels == ["a", "b"]  # attributes of the wrapped model
    batcher.close()


def test_a_lone_request_does_not_wait_and_max_batch_is_respected():
    model = SlowEcho()
    batcher = MicroBatcher(model, max_batch=4)
    began = time.perf_counter()
    assert batcher.predict_proba(["x-1"]).tolist() == [[1.0, -1.0]]
    assert time.perf_counter() - began < 0.5
    threads = [threading.Thread(target=batcher.predict_proba, args=([f"x-{n}"],)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(model.batch_sizes) <= 4
    batcher.close()


def test_a_failing_batch_raises_in_its_callers_and_the_batcher_goes_on():
    batcher = MicroBatcher(SlowEcho())
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.predict_proba(["boom"])
    assert batcher.predict_proba(["x-2"]).tolist() == [[2.0, -2.0]]
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.predict_proba(["x-3"])
