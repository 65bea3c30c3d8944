"""A progress bar that counts finished steps, not dispatched ones.

JAX returns from a jitted step as soon as it is queued, so a bar advanced at each call runs ahead (10 step/s) and
then stalls at the next host sync (the logging step). `FinishedSteps` advances the bar when a step's output is
computed, and keeps at most `max_in_flight` steps queued (one computing, one waiting: the device never idles, and
the queue holds no more than two steps' buffers), so the rate and the ETA are the true ones.

Example:
    >>> import io, jax.numpy as jnp
    >>> from tqdm.auto import tqdm
    >>> with tqdm(total=3, file=io.StringIO()) as bar:
    ...     steps = FinishedSteps(bar)
    ...     for _ in range(3):
    ...         steps.dispatched(1, jnp.ones(()))
    ...     steps.drain()
    ...     bar.n
    3
"""
from __future__ import annotations

import collections

import jax


class FinishedSteps:
    def __init__(self, bar, *, max_in_flight: int = 2):
        self._bar, self._max = bar, max_in_flight
        self._pending: collections.deque = collections.deque()

    def dispatched(self, steps: int, output: jax.Array) -> None:
        """`steps` more updates were queued; `output` (an array they return) is ready when they have finished."""
        self._pending.append((steps, output))
        while self._pending and (len(self._pending) > self._max or self._pending[0][1].is_ready()):
            self._finish()

    def drain(self) -> None:
        """Waits for every queued step (the caller is about to sync anyway: logging, validation, saving)."""
        while self._pending:
            self._finish()

    def _finish(self) -> None:
        steps, output = self._pending.popleft()
        output.block_until_ready()
        self._bar.update(steps)
