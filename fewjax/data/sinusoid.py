"""Sinusoid regression tasks (Finn et al. 2017), generated on the fly.

Task: y = A sin(x - phi) with A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5];
`shots` support and `queries` query points, `x` and `y` of shape `[K, 1]`
float32. Same interface as `EpisodeSampler` (host `sample` / `sample_batch`,
on-device `device_state` / `device_sample`, `eval_set`), and the same
determinism: a task depends only on `(seed, step, task_index)`.

Example:
    >>> import jax.numpy as jnp
    >>> from fewjax.data import sinusoid
    >>> s = sinusoid(shots=10, queries=10, seed=0)
    >>> s.sample(0).support.x.shape
    (10, 1)
    >>> s.device_sample(s.device_state(), 0, jnp.arange(4)).query.y.shape
    (4, 10, 1)
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fewjax.data.episodes import TaskIndices, _task_indices
from fewjax.types import Batch, Task


class SinusoidState(NamedTuple):
    """Ranges `[low, high]` of amplitude, phase and x (float32 arrays of shape [2])."""

    amplitude: jax.Array
    phase: jax.Array
    x: jax.Array


class SinusoidSampler:
    """Sinusoid regression tasks; build with `sinusoid(...)`."""

    def __init__(self, *, shots: int, queries: int, seed: int, amplitude=(0.1, 5.0), phase=(0.0, np.pi),
                 x_range=(-5.0, 5.0)):
        for name, value, low in (("shots", shots, 1), ("queries", queries, 0), ("seed", seed, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        for name, (lo, hi) in (("amplitude", amplitude), ("phase", phase), ("x_range", x_range)):
            if not lo <= hi:
                raise ValueError(f"{name}=({lo}, {hi}): low must not exceed high.")
        self.shots, self.queries, self.seed = int(shots), int(queries), int(seed)
        self.amplitude, self.phase, self.x_range = tuple(amplitude), tuple(phase), tuple(x_range)

    def _host_batch(self, seed: int, step: int, task_indices: TaskIndices) -> Task:
        idx = _task_indices(task_indices)
        n = self.shots + self.queries
        xs, ys = [], []
        for i in idx:
            rng = np.random.default_rng([seed, int(step), int(i)])
            a = rng.uniform(*self.amplitude)
            p = rng.uniform(*self.phase)
            x = rng.uniform(*self.x_range, size=(n, 1))
            xs.append(x)
            ys.append(a * np.sin(x - p))
        x = np.asarray(xs, np.float32).reshape(len(idx), n, 1)
        y = np.asarray(ys, np.float32).reshape(len(idx), n, 1)
        s = self.shots
        return Task(Batch(x[:, :s], y[:, :s]), Batch(x[:, s:], y[:, s:]))

    def sample(self, step: int, task_index: int = 0) -> Task:
        return jax.tree.map(lambda a: a[0], self._host_batch(self.seed, step, [task_index]))

    def sample_batch(self, step: int, task_indices: TaskIndices) -> Task:
        return self._host_batch(self.seed, step, task_indices)

    def batches(self, task_indices: TaskIndices, *, start_step: int = 0) -> Iterator[Task]:
        step = int(start_step)
        while True:
            yield self.sample_batch(step, task_indices)
            step += 1

    def eval_set(self, num_episodes: int, *, seed: int) -> Task:
        return self._host_batch(int(seed), 0, int(num_episodes))

    def eval_batches(self, num_episodes: int, *, seed: int, batch_size: int, start: int = 0) -> Iterator[Task]:
        for start in range(int(start), int(num_episodes), batch_size):
            yield self._host_batch(int(seed), 0, range(start, min(start + batch_size, int(num_episodes))))

    fits_on_device = True

    def device_state(self, sharding=None) -> SinusoidState:
        state = SinusoidState(*(np.asarray(r, np.float32) for r in (self.amplitude, self.phase, self.x_range)))
        return jax.device_put(state, sharding) if sharding is not None else jax.device_put(state)

    def device_sample(self, state: SinusoidState, step, task_indices) -> Task:
        if isinstance(task_indices, (int, np.integer)):
            task_indices = jnp.arange(int(task_indices))
        task_indices = jnp.asarray(task_indices)
        base = jax.random.fold_in(jax.random.key(self.seed), step)
        n = self.shots + self.queries

        def one(i):
            ka, kp, kx = jax.random.split(jax.random.fold_in(base, i), 3)
            a = jax.random.uniform(ka, (), minval=state.amplitude[0], maxval=state.amplitude[1])
            p = jax.random.uniform(kp, (), minval=state.phase[0], maxval=state.phase[1])
            x = jax.random.uniform(kx, (n, 1), minval=state.x[0], maxval=state.x[1])
            return x, a * jnp.sin(x - p)

        x, y = jax.vmap(one)(task_indices.astype(jnp.uint32))
        s = self.shots
        return Task(Batch(x[:, :s], y[:, :s]), Batch(x[:, s:], y[:, s:]))


def sinusoid(*, shots: int, queries: int, seed: int, amplitude=(0.1, 5.0), phase=(0.0, np.pi),
             x_range=(-5.0, 5.0)) -> SinusoidSampler:
    """A `SinusoidSampler` (Finn et al. 2017 ranges by default)."""
    return SinusoidSampler(shots=shots, queries=queries, seed=seed, amplitude=amplitude, phase=phase,
                           x_range=x_range)
