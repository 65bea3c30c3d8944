"""Supervised losses in the kernel contract: turn a model's `apply_fn(params, x)` into a
`loss_fn(params, batch) -> (loss, metrics)` for `adapt`, `maml_loss` and `reptile_grad`.

Example:
    >>> import jax.numpy as jnp, fewjax
    >>> loss_fn = fewjax.classification_loss(lambda w, x: x @ w)
    >>> b = fewjax.Batch(x=jnp.eye(2), y=jnp.array([0, 1]))
    >>> loss, m = loss_fn(jnp.eye(2) * 5.0, b)
    >>> float(m["accuracy"])
    1.0
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import optax

from fewjax.kernels._episodic import at_least_f32


def classification_loss(apply_fn: Callable) -> Callable:
    """Softmax cross-entropy on integer labels; metrics: `accuracy`."""

    def loss_fn(params, batch):
        logits = at_least_f32(apply_fn(params, batch.x))
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch.y))
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == batch.y)}

    return loss_fn


def regression_loss(apply_fn: Callable) -> Callable:
    """Mean squared error (sinusoid regression); no metrics."""

    def loss_fn(params, batch):
        pred = at_least_f32(apply_fn(params, batch.x))
        return jnp.mean((pred - batch.y) ** 2), {}

    return loss_fn
