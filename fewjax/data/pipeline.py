"""Host prefetch: the next meta-batches are prepared on a background thread while the device computes.

Placement on devices (meshes, shardings, per-device programs) is `fewjax.placement`'s job, one module for the
trainer, the evaluator and the tests.

Example:
    >>> import numpy as np, fewjax.data as fd
    >>> src = fd.ArraySource(np.zeros((40, 8), np.float32), np.arange(40) % 4, list("abcd"))
    >>> sampler = fd.episodes(src, ways=2, shots=1, queries=2, seed=0)
    >>> batches = fd.prefetch(sampler.batches(4))
    >>> next(batches).support.x.shape[0]
    4
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class prefetch(Iterator):
    """Runs `iterator` on a background thread, keeping up to `size` items ready.

    Use it to overlap host-side episode sampling (and `put`, e.g. a
    `shard_tasks` placement) with the accelerator step. Exceptions raised in
    the thread are re-raised on `next()`. Call `close()` (or use it as a
    context manager) to stop the thread early.

    Args:
      iterator: any iterable; consumed only by the background thread.
      size: how many items to compute ahead (>= 1).
      put: optional function applied to each item in the thread.
    """

    def __init__(self, iterator: Iterable, size: int = 2, put: Callable[[Any], Any] | None = None):
        if size < 1:
            raise ValueError(f"prefetch size must be >= 1; got {size}.")
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._work, args=(iter(iterator), put), daemon=True)
        self._thread.start()

    def _offer(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, it: Iterator, put) -> None:
        try:
            for item in it:
                if not self._offer(put(item) if put is not None else item):
                    return
        except BaseException as error:  # re-raised in the consumer
            self._offer(_Failure(error))
            return
        self._offer(_END)

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item

    def close(self) -> None:
        """Stops the background thread (it finishes the item in progress first)."""
        self._stop.set()
        self._done = True
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
