"""Host prefetch: order, errors, running ahead, closing."""
import threading
import time

import pytest

from fewjax.data import prefetch


def test_prefetch_order_put_and_errors():
    assert list(prefetch(range(10), size=3, put=lambda v: v * 2)) == [2 * i for i in range(10)]

    def failing():
        yield 1
        raise RuntimeError("boom in producer")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="boom in producer"):
        next(it)
    with pytest.raises(ValueError, match="size must be >= 1"):
        prefetch(range(3), size=0)


def test_prefetch_runs_ahead_and_closes():
    produced = []

    def slow():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    with prefetch(slow(), size=2) as it:
        assert next(it) == 0
        time.sleep(0.3)
        assert len(produced) >= 3  # computed ahead while the consumer slept
        n_threads = threading.active_count()
    time.sleep(0.3)
    assert threading.active_count() <= n_threads - 1
    assert len(produced) <= 6  # bounded: stopped after close
