"""Device placement: a 1-D mesh over the task axis, sharded meta-batches, host prefetch.

A meta-batch is a `Task` whose arrays have a leading task axis `[B, ...]`. On
`n` devices it is split along that axis (B must be a multiple of n); model
parameters and the on-device sampler state are replicated. One device is the
trivial case, so the same step runs on 1 CPU, 8 GPUs or a TPU slice.

Example:
    >>> import numpy as np, fewjax.data as fd
    >>> mesh = fd.task_mesh()
    >>> src = fd.ArraySource(np.zeros((40, 8), np.float32), np.arange(40) % 4, list("abcd"))
    >>> sampler = fd.episodes(src, ways=2, shots=1, queries=2, seed=0)
    >>> batches = fd.prefetch(fd.shard_tasks(t, mesh) for t in sampler.batches(mesh.size * 2))
    >>> next(batches).support.x.shape[0] == mesh.size * 2
    True
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

TASK_AXIS = "tasks"


def task_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `"tasks"` over `devices` (default: all devices, `jax.devices()`)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("task_mesh needs at least one device; got an empty list.")
    return Mesh(np.array(devices), (TASK_AXIS,))


def task_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (task) axis of an array across the mesh; other axes whole."""
    return NamedSharding(mesh, PartitionSpec(TASK_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh (parameters, optimizer state, `device_state()`)."""
    return NamedSharding(mesh, PartitionSpec())


def shard_tasks(tasks: Any, mesh: Mesh) -> Any:
    """Places a host meta-batch (any pytree, leading task axis) split over `mesh`'s devices.

    With several processes, each passes its own slice of the global meta-batch
    (e.g. from `sampler.sample_batch(step, its_indices)`) and gets back the
    global array. Raises ValueError when the local batch does not divide evenly
    over the local devices.
    """
    sharding = task_sharding(mesh)
    local_devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    leaves = jax.tree.leaves(tasks)
    for leaf in leaves:
        shape = np.shape(leaf)
        if not shape or shape[0] % len(local_devices):
            raise ValueError(
                f"a meta-batch with leading task axis {shape[0] if shape else '(none)'} cannot be split over "
                f"{len(local_devices)} devices: use a meta-batch size that is a multiple of {len(local_devices)} "
                "(per process)."
            )
    if jax.process_count() == 1:
        return jax.device_put(tasks, sharding)
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tasks)


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
