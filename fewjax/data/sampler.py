"""What the trainer and the evaluator ask of episode data: the `Sampler` protocol.

`fewjax.data.episodes` (classification episodes from an `ArraySource`), `fewjax.data.sinusoid` (regression tasks)
and `fewjax.data.within_group.within_group_episodes` (Lake's within-alphabet test) implement it. A task of step
`s` is a function of `(seed, s, task index)` alone, on the host and on the device alike.
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

from fewjax.types import Task


@runtime_checkable
class Sampler(Protocol):
    fits_on_device: bool  # whether `device_state()` fits in device memory (else the host feeds the step)

    def sample(self, step: int, task_index: int = 0) -> Task:
        """One task (numpy, no leading axis)."""

    def sample_batch(self, step: int, task_indices: Any) -> Task:
        """Tasks `task_indices` (an int n: 0..n-1) of `step`, numpy, leading task axis."""

    def eval_batches(self, num_episodes: int, *, seed: int, batch_size: int, start: int = 0) -> Iterator[Task]:
        """A fixed evaluation set of `num_episodes` tasks drawn from `seed` alone, in chunks of `batch_size`, from
        episode `start` on (episode i is the same in a set of any size)."""

    def device_state(self, sharding=None) -> Any:
        """What `device_sample` needs on the device (the padded data, or the task family's ranges)."""

    def device_sample(self, state: Any, step, task_indices) -> Task:
        """`sample_batch` inside a jitted step, from `device_state()`."""
