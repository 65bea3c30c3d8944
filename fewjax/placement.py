"""Where arrays live on many devices: a 2-D ("tasks", "fsdp") mesh, FSDP parameter sharding, per-process slices.

Tasks of a meta-batch are independent, so the meta-batch is split over *all* devices (both mesh axes), and each
device runs the one-device program on its own tasks (`per_device`, a `jax.shard_map`): the meta-gradient is
averaged over devices with one all-reduce of the gradients, and evaluation needs no communication at all. Left
to XLA's SPMD partitioner, per-task weights (MAML's adapted weights, vmapped) would become one grouped
convolution over all tasks, which it computes by gathering every task's weights and activations on every
device (docs/scaling.md). Model
parameters and their optimizer state are replicated when small and, when `fsdp > 1`, split FSDP-style along the
"fsdp" axis when large: each large leaf over its largest dimension divisible by the axis size. XLA then gathers a
parameter where a device needs it whole and reduce-scatters its gradient; no collective is written by hand. The
same rule applies to a parameter and to its Adam moments (it looks only at shapes), so both live together.

`fsdp=1` is a mesh of shape `(n, 1)`: every parameter replicated, the task axis split over the `n` devices, the
same program as a 1-D task mesh. With several processes (`jax.distributed`), devices are ordered by process, so an
"fsdp" group of size <= the local device count stays within one host (its gathers use the fast local links).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.placement import make_mesh, state_shardings
    >>> mesh = make_mesh(fsdp=1)
    >>> state = {"w": jnp.zeros((1024, 512)), "b": jnp.zeros(512), "step": jnp.int32(0)}
    >>> shardings = state_shardings(state, mesh, min_size=1024)
    >>> tuple(shardings["w"].spec)  # fsdp=1: nothing to split over
    ()
    >>> state = jax.device_put(state, shardings)
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

TASKS = "tasks"
FSDP = "fsdp"

EVAL_MEMORY_MB = 768
"""Default bound on one evaluation batch's planned memory, per device (`fewjax.evaluate`, `config.eval_memory_mb`,
`evaluate.py --memory_mb`): a 20-way conv4 test stays under 2 GB of process memory on the CPU, and batches of 5-way
episodes are not cut at all."""

MIN_SHARDED_SIZE = 2**18
"""Leaves with fewer elements (1 MiB of float32) stay replicated: gathering them costs more than it saves."""


def make_mesh(*, fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `(n // fsdp, fsdp)` mesh named `("tasks", "fsdp")` over `devices` (default: all, `jax.devices()`).

    Raises ValueError when `fsdp` does not divide the number of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device; got an empty list.")
    if isinstance(fsdp, bool) or not isinstance(fsdp, (int, np.integer)) or fsdp < 1 or len(devices) % fsdp:
        raise ValueError(f"config.fsdp={fsdp!r} must be a positive divisor of the {len(devices)} devices "
                         f"(parameters are split over groups of fsdp devices); use 1 to replicate them.")
    return Mesh(np.array(devices).reshape(len(devices) // fsdp, fsdp), (TASKS, FSDP))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (task) axis over every device of `mesh` (all its axes); other axes whole."""
    return NamedSharding(mesh, PartitionSpec(task_axes(mesh)))


def task_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes the task axis is split over: all of them, major to minor."""
    return tuple(mesh.axis_names)


def per_device(fn: Callable, mesh: Mesh, *, in_specs: Any, out_specs: Any) -> Callable:
    """`fn(*args)` run by each device of `mesh` on its own shards of `args`: `jax.shard_map` without type checks.

    Inside, `fn` is the plain one-device program: a gradient it takes is this device's own, and `fn` averages
    what it must itself, e.g. `jax.lax.pmean(grads, task_axes(mesh))` once per step. (With shard_map's
    `check_vma=True`, JAX would treat replicated parameters as device-invariant and sum every gradient taken
    with respect to them over the devices where it is taken: per chunk of tasks, and in MAML's inner loop, whose
    gradients must stay per task.) Outputs given a replicated spec must be equal on all devices, as after a
    `pmean`. `jax.lax.axis_index(task_axes(mesh))` is the device's position along the task axis.
    """
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def map_per_device(fn: Callable, mesh: Mesh) -> Callable:
    """`fn(params, tasks) -> per-task outputs` (leading task axis), each device on its own tasks, no communication.

    `params` replicated; `tasks` and the outputs split over the task axis as `batch_sharding(mesh)` splits them.
    This is how evaluation runs on many devices: `jax.jit(map_per_device(method.evaluate, mesh))`.
    """
    spec = PartitionSpec(task_axes(mesh))
    return per_device(fn, mesh, in_specs=(PartitionSpec(), spec), out_specs=spec)


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def leaf_spec(shape: Sequence[int], parts: int, *, axis: str = FSDP, min_size: int | None = None) -> PartitionSpec:
    """The spec of one leaf: split its largest dimension divisible by `parts` over `axis`, or replicate it.

    A leaf is replicated when `parts == 1`, when it has fewer than `min_size` elements, or when no dimension is
    divisible by `parts`. Among equally large dimensions the first is split. `min_size` None: `MIN_SHARDED_SIZE`.
    """
    min_size = MIN_SHARDED_SIZE if min_size is None else min_size
    shape = tuple(int(d) for d in shape)
    if parts == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return PartitionSpec()
    candidates = [i for i, d in enumerate(shape) if d % parts == 0 and d >= parts]
    if not candidates:
        return PartitionSpec()
    dim = max(candidates, key=lambda i: (shape[i], -i))
    return PartitionSpec(*([None] * dim), axis)


def state_shardings(tree: Any, mesh: Mesh, *, axis: str = FSDP, min_size: int | None = None) -> Any:
    """NamedShardings for every array leaf of `tree` (params, optimizer state, a whole `TrainState`).

    Large leaves are split over `axis` of `mesh` along their largest divisible dimension (`leaf_spec`), the rest
    replicated (`min_size` None: `MIN_SHARDED_SIZE`, read at call time). Leaves may be arrays or `jax.ShapeDtypeStruct`s; None subtrees (e.g. no EMA) stay None. Place the
    state with `jax.device_put(tree, shardings)` and pass the same shardings as the jitted step's `out_shardings`
    so that its updates stay where they are.
    """
    if axis not in mesh.axis_names:
        raise ValueError(f"state_shardings: mesh axes {mesh.axis_names} have no {axis!r} axis; build the mesh with "
                         "fewjax.placement.make_mesh(fsdp=...).")
    parts = mesh.shape[axis]
    return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(np.shape(x), parts, axis=axis, min_size=min_size)),
                        tree)


def process_task_indices(mesh: Mesh, meta_batch_size: int) -> np.ndarray:
    """The global task indices of the meta-batch that this process's devices hold under `batch_sharding(mesh)`.

    On one process: `arange(meta_batch_size)`. With several, each process samples only these tasks (tasks are a
    function of `(seed, step, task index)`, so the global meta-batch is the same whatever the process count) and
    passes them to `shard_local_tasks`.
    """
    if meta_batch_size % mesh.size:
        raise ValueError(f"meta_batch_size={meta_batch_size} must be divisible by the {mesh.size} devices (the task "
                         f"axis is split over them); choose a multiple of {mesh.size}.")
    index_map = batch_sharding(mesh).addressable_devices_indices_map((meta_batch_size,))
    rows = sorted({i for (s,) in index_map.values() for i in range(*s.indices(meta_batch_size))})
    if rows != list(range(rows[0], rows[-1] + 1)):
        raise ValueError(f"this process's devices hold non-contiguous tasks {rows}; order the mesh's devices by "
                         "process (jax.devices() does).")
    return np.asarray(rows, np.int64)


def shard_local_tasks(tasks: Any, mesh: Mesh, *, meta_batch_size: int, axis: int = 0) -> Any:
    """The global meta-batch (`jax.Array`s split over `batch_sharding`) from this process's slice of it.

    `tasks`: numpy pytree whose `axis` is the task axis holding the rows `process_task_indices(mesh,
    meta_batch_size)` (axis=1 for a stack of `steps_per_call` meta-batches).
    """
    spec = PartitionSpec(*([None] * axis), task_axes(mesh))
    sharding = NamedSharding(mesh, spec)
    local = len(process_task_indices(mesh, meta_batch_size))

    def put(a):
        a = np.asarray(a)
        if a.ndim <= axis or a.shape[axis] != local:
            raise ValueError(f"shard_local_tasks: expected {local} tasks on axis {axis} (this process's share of "
                             f"{meta_batch_size}); got an array of shape {a.shape}.")
        global_shape = a.shape[:axis] + (meta_batch_size,) + a.shape[axis + 1:]
        return jax.make_array_from_process_local_data(sharding, a, global_shape)

    return jax.tree.map(put, tasks)


def fetch(x: Any) -> Any:
    """`x` as numpy on every process, gathering the shards other processes hold (`np.asarray` refuses those)."""
    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(one, x)
