"""`over_tasks`: a kernel over one task becomes a kernel over a meta-batch of tasks.

Example:
    >>> import functools, jax.numpy as jnp, fewjax
    >>> def loss_fn(w, batch):
    ...     return jnp.mean((w - batch.y) ** 2), {}
    >>> b = fewjax.Batch(x=jnp.zeros((3, 2)), y=jnp.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    >>> tasks = fewjax.Task(b, b)  # 3 tasks of 2 examples each
    >>> kernel = functools.partial(fewjax.maml_loss, loss_fn, inner_steps=1, inner_lr=0.1)
    >>> loss, metrics = fewjax.over_tasks(kernel)(jnp.array(1.0), tasks)
    >>> loss.shape
    ()
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp


def over_tasks(kernel: Callable) -> Callable:
    """Maps `kernel(params, task, ...) -> (value, metrics)` over the leading axis of `task` with `jax.vmap`.

    `params` (and any further arguments) are shared by all tasks; the returned function gives the mean over
    tasks of the value (a scalar loss, or a pytree such as Reptile's pseudo-gradient) and of every metric.
    Under `jax.jit` with the task axis sharded over devices, XLA turns the mean into an all-reduce.
    """

    @functools.wraps(kernel)
    def batched(params, tasks, *args, **kwargs):
        sizes = {leaf.shape[0] if leaf.ndim else None for leaf in jax.tree.leaves(tasks)}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                f"over_tasks: every array of the tasks needs the same leading task axis; got sizes {sorted(map(str, sizes))}."
            )
        values, metrics = jax.vmap(lambda task: kernel(params, task, *args, **kwargs))(tasks)
        mean = functools.partial(jnp.mean, axis=0)
        return jax.tree.map(mean, values), jax.tree.map(mean, metrics)

    return batched
