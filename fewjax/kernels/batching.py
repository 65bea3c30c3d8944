"""`over_tasks`: a kernel over one task becomes a kernel over a meta-batch of tasks.

Tasks run all at once (`jax.vmap`, the default) or in chunks of `chunk_size` tasks, vmapped within a chunk and run
one chunk after another in a `lax.scan`. `over_tasks_value_and_grad` also takes the gradient chunk by chunk and
sums it, so memory holds one chunk's activations instead of the whole meta-batch's.

Why chunks: after MAML's inner loop every task has its own weights, and `vmap` turns a convolution with per-task
weights into a grouped convolution, which XLA:CPU runs several times slower per task than T plain ones
(bench/README.md); on GPUs and TPUs the vmapped program is the fast one.

Example:
    >>> import functools, jax.numpy as jnp, fewjax
    >>> def loss_fn(w, batch):
    ...     return jnp.mean((w - batch.y) ** 2), {}
    >>> b = fewjax.Batch(x=jnp.zeros((4, 2)), y=jnp.arange(8.0).reshape(4, 2))
    >>> tasks = fewjax.Task(b, b)  # 4 tasks of 2 examples each
    >>> kernel = functools.partial(fewjax.maml_loss, loss_fn, inner_steps=1, inner_lr=0.1)
    >>> loss, metrics = fewjax.over_tasks(kernel)(jnp.array(1.0), tasks)
    >>> (loss2, _), grad = fewjax.over_tasks_value_and_grad(kernel, chunk_size=1)(jnp.array(1.0), tasks)
    >>> bool(jnp.allclose(loss, loss2)), grad.shape
    (True, ())
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp


def over_tasks(kernel: Callable, *, chunk_size: int | None = None) -> Callable:
    """Maps `kernel(params, task, ...) -> (value, metrics)` over the leading axis of `task`.

    `params` (and any further arguments) are shared by all tasks; the returned function gives the mean over
    tasks of the value (a scalar loss, or a pytree such as Reptile's pseudo-gradient) and of every metric.
    `chunk_size` (a divisor of the task count) runs that many tasks at a time, chunk after chunk; None runs
    all at once. On many devices, run it per device on the device's own tasks and average the devices' means
    (`fewjax.placement.per_device`): left to XLA's partitioner, vmapped per-task weights become one grouped
    convolution over all tasks, which it computes by gathering every task's weights and activations everywhere.
    """

    @functools.wraps(kernel)
    def batched(params, tasks, *args, **kwargs):
        per_chunk = jax.vmap(lambda task: kernel(params, task, *args, **kwargs))
        chunks = _chunks(tasks, chunk_size, "over_tasks")
        if chunks is None:
            return _mean(per_chunk(tasks))
        total = jax.lax.scan(lambda acc, chunk: (_add(acc, _sum(per_chunk(chunk))), None),
                             _zeros(jax.eval_shape(lambda c: _sum(per_chunk(c)), _first(chunks))), chunks)[0]
        return _scale(total, 1.0 / _num_tasks(tasks))

    return batched


def over_tasks_value_and_grad(kernel: Callable, *, chunk_size: int | None = None) -> Callable:
    """`jax.value_and_grad(over_tasks(kernel), has_aux=True)` with respect to `params`, chunk by chunk.

    Returns `f(params, tasks, ...) -> ((mean loss, mean metrics), mean gradient)`. With `chunk_size` the
    gradient of each chunk of tasks is taken inside a `lax.scan` and summed, so the backward pass keeps one
    chunk's activations alive (memory independent of the meta-batch size); the result equals the vmapped one.
    """
    grad_fn = jax.value_and_grad(lambda params, tasks, *a, **k: _sum(jax.vmap(
        lambda task: kernel(params, task, *a, **k))(tasks)), has_aux=True)

    @functools.wraps(kernel)
    def batched(params, tasks, *args, **kwargs):
        chunks = _chunks(tasks, chunk_size, "over_tasks_value_and_grad")
        if chunks is None:
            (loss, metrics), grads = grad_fn(params, tasks, *args, **kwargs)
        else:
            def body(acc, chunk):
                return _add(acc, grad_fn(params, chunk, *args, **kwargs)), None

            init = _zeros(jax.eval_shape(lambda c: grad_fn(params, c, *args, **kwargs), _first(chunks)))
            (loss, metrics), grads = jax.lax.scan(body, init, chunks)[0]
        return _scale(((loss, metrics), grads), 1.0 / _num_tasks(tasks))

    return batched


def map_tasks(kernel: Callable, *, chunk_size: int | None = None) -> Callable:
    """`kernel(params, task, ...)` for every task along the leading axis, outputs stacked (no mean): evaluation.

    `chunk_size` as in `over_tasks`: that many tasks vmapped at a time, chunk after chunk (`lax.map`).
    """

    @functools.wraps(kernel)
    def mapped(params, tasks, *args, **kwargs):
        per_chunk = jax.vmap(lambda task: kernel(params, task, *args, **kwargs))
        chunks = _chunks(tasks, chunk_size, "map_tasks")
        if chunks is None:
            return per_chunk(tasks)
        out = jax.lax.map(per_chunk, chunks)  # [T / c, c, ...], chunk k holding tasks k, k + T/c, ...
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:]), out)

    return mapped


def _num_tasks(tasks) -> int:
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in jax.tree.leaves(tasks)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"over_tasks: every array of the tasks needs the same leading task axis; got sizes {sorted(map(str, sizes))}."
        )
    return sizes.pop()


def _chunks(tasks, chunk_size: int | None, name: str):
    """Tasks `[T, ...]` as `[T // chunk_size, chunk_size, ...]`, or None to run them all at once.

    Chunk `k` holds tasks `k, k + T/c, k + 2T/c, ...` (the order does not change a sum; `map_tasks` restores it).
    """
    n = _num_tasks(tasks)
    if chunk_size is None or chunk_size == n:
        return None
    if not isinstance(chunk_size, int) or chunk_size < 1 or n % chunk_size:
        raise ValueError(f"{name}: chunk_size={chunk_size!r} must be a positive divisor of the {n} tasks.")
    return jax.tree.map(lambda x: jnp.swapaxes(x.reshape(chunk_size, n // chunk_size, *x.shape[1:]), 0, 1), tasks)


def _first(chunks):
    return jax.tree.map(lambda x: x[0], chunks)


def _sum(tree):
    return jax.tree.map(lambda x: jnp.sum(x, axis=0), tree)


def _mean(tree):
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), tree)


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


def _zeros(shapes):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _scale(tree, factor: float):
    return jax.tree.map(lambda x: x * jnp.asarray(factor, x.dtype), tree)
