"""Micro-batching of concurrent model calls: requests that arrive while the model is busy share one forward pass."""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


def take_batch(inbox: queue.Queue, limit: int, size: Callable[[Any], int] = lambda item: 1) -> list | None:
    """The next item of `inbox` plus those already waiting, up to `limit` (summed `size`); None at the None sentinel,
    which is put back after a partial batch so the worker stops once that batch is done."""
    first = inbox.get()
    if first is None:
        return None
    batch, total = [first], size(first)
    while total < limit:
        try:
            item = inbox.get_nowait()
        except queue.Empty:
            break
        if item is None:
            inbox.put(None)
            break
        batch.append(item)
        total += size(item)
    return batch


class MicroBatcher:
    """Wraps a `predict_proba(texts)` model: one worker thread runs whatever requests are waiting as one batch.

    No request waits for company: the worker takes the first request and everything queued behind it (up to
    `max_batch` texts), so an idle service answers at single-request latency while 16 simultaneous users cost about
    one batched forward instead of 16 forwards fighting over the same cores. Thread-safe; other attributes
    (`labels`, ...) are the wrapped model's.
    """

    def __init__(self, predictor: Any, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.predictor, self.max_batch = predictor, max_batch
        self.batches = self.requests = 0  # counters for logs and tests
        self._inbox: queue.Queue = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities for `texts`, computed in a batch with other callers' texts."""
        if self._closed:
            raise RuntimeError("the micro-batcher is closed")
        future: Future = Future()
        self._inbox.put((list(texts), future))
        return future.result()

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self._closed = True
        self._inbox.put(None)
        self._worker.join(timeout=10)

    def _run(self) -> None:
        while (batch := take_batch(self._inbox, self.max_batch, size=lambda request: len(request[0]))) is not None:
            texts = [text for request, _ in batch for text in request]
            try:
                probabilities = np.asarray(self.predictor.predict_proba(texts))
            except BaseException as error:  # every caller of this batch gets the error, the worker goes on
                for _, future in batch:
                    future.set_exception(error)
                continue
            self.batches, self.requests = self.batches + 1, self.requests + len(batch)
            offset = 0
            for request, future in batch:
                future.set_result(probabilities[offset:offset + len(request)])
                offset += len(request)
