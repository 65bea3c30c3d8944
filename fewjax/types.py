"""Core pytree types shared by kernels, data and training.

A `Batch` is a pair of arrays with the example axis first; a `Task` is a
support batch (the few labelled examples to adapt on) and a query batch (the
examples the adapted model is judged on). Both are NamedTuples, hence pytrees:
`jax.vmap` over a leading task axis, `jax.jit` and `jax.tree.map` work on them.

Example:
    >>> import jax.numpy as jnp, fewjax
    >>> support = fewjax.Batch(x=jnp.zeros((5, 28, 28, 1)), y=jnp.arange(5))
    >>> task = fewjax.Task(support=support, query=support)
    >>> task.support.x.shape
    (5, 28, 28, 1)
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax

Params = Any  # any pytree of arrays
Metrics = Mapping[str, jax.Array]


class Batch(NamedTuple):
    """Inputs `x` and targets `y`, example axis first."""

    x: Any
    y: Any


class Task(NamedTuple):
    """One few-shot task: adapt on `support`, evaluate on `query`."""

    support: Batch
    query: Batch


LossFn = Callable[[Params, Batch], "tuple[jax.Array, Metrics]"]
EmbedFn = Callable[[Params, Any], jax.Array]
