"""Reptile (Nichol, Achiam & Schulman 2018) as a pseudo-gradient.

`reptile_grad` adapts a copy of the parameters with `adapt` and returns `params - adapted`. Handing it to any
optax optimizer as a gradient gives the Reptile outer update; plain SGD with rate e gives
`theta + e * (phi - theta)`, the update of the paper.

Inner data: with `use_query=True` (the default) the inner loop trains on support and query concatenated, as
Reptile has no separate query loss at training time; with `use_query=False` it trains on the support set only.
The inner loop takes full-batch steps on that data.

Example:
    >>> import jax.numpy as jnp, fewjax
    >>> def loss_fn(w, batch):
    ...     return jnp.mean((w - batch.y) ** 2), {}
    >>> b = fewjax.Batch(x=jnp.zeros(2), y=jnp.array([1.0, 1.0]))
    >>> g, m = fewjax.reptile_grad(loss_fn, jnp.array(0.0), fewjax.Task(b, b), inner_steps=1, inner_lr=0.25)
    >>> float(g)
    -0.5
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fewjax.kernels.adapt import Mask, adapt
from fewjax.types import Batch, LossFn, Params, Task


def reptile_grad(
    loss_fn: LossFn,
    params: Params,
    task: Task,
    *,
    inner_steps: int,
    inner_lr: float | jax.Array | Params | None = None,
    inner_optimizer: optax.GradientTransformation | None = None,
    use_query: bool = True,
    mask: Mask | None = None,
):
    """Reptile's pseudo-gradient `params - adapted` for one task.

    Returns:
      `(pseudo_grad, metrics)`: `pseudo_grad` has the structure of `params` and carries no gradient;
      `metrics` holds `loss` (inner loss after adaptation) and `inner_loss_before`, plus the user's metrics
      after adaptation on the inner data.
    """
    if inner_steps < 1:
        raise ValueError(f"reptile_grad: inner_steps must be >= 1, got {inner_steps}.")
    data = _concat(task.support, task.query) if use_query else task.support
    params = jax.lax.stop_gradient(params)
    adapted, losses = adapt(
        loss_fn, params, data, steps=inner_steps, lr=inner_lr, optimizer=inner_optimizer,
        first_order=True, mask=mask, return_losses=True,
    )
    after, after_metrics = loss_fn(adapted, data)
    metrics = dict(after_metrics)
    metrics.update(loss=after, inner_loss_before=losses[0])
    return jax.tree.map(jnp.subtract, params, adapted), metrics


def _concat(a: Batch, b: Batch) -> Batch:
    return jax.tree.map(lambda u, v: jnp.concatenate([u, v], axis=0), a, b)
