"""MAML (Finn et al. 2017) and its first-order, Meta-SGD and ANIL variants, as one differentiable loss.

`maml_loss` adapts to the support set with `adapt` and returns the query loss at the adapted parameters.
`jax.grad` of it is the meta-gradient: second order by default (it differentiates through the inner
gradients), first order with `first_order=True`. Meta-SGD passes a learnable pytree `inner_lr`; ANIL passes a
`mask` that adapts only the head.

Batch norm: fewjax's models normalise with the statistics of the batch they are given and keep no running
averages (the policy of Finn et al.'s reference code), so the inner loop sees support statistics, the outer
loss query statistics, and under `vmap` no statistic is shared between tasks.

Example:
    >>> import functools, jax, jax.numpy as jnp, fewjax
    >>> def loss_fn(w, batch):
    ...     return jnp.mean((jnp.tanh(batch.x * w) - batch.y) ** 2), {}
    >>> b = fewjax.Batch(x=jnp.array([0.5, 1.0]), y=jnp.array([0.2, 0.4]))
    >>> task = fewjax.Task(support=b, query=b)
    >>> meta = functools.partial(fewjax.maml_loss, loss_fn, inner_steps=2, inner_lr=0.5)
    >>> (loss, metrics), g = jax.value_and_grad(meta, has_aux=True)(jnp.array(1.0), task)
    >>> bool(metrics["query_loss_after"] < metrics["query_loss_before"])
    True
"""
from __future__ import annotations

import jax
import optax

from fewjax.kernels.adapt import Mask, adapt
from fewjax.types import LossFn, Params, Task


def maml_loss(
    loss_fn: LossFn,
    params: Params,
    task: Task,
    *,
    inner_steps: int,
    inner_lr: float | jax.Array | Params | None = None,
    inner_optimizer: optax.GradientTransformation | None = None,
    first_order: bool = False,
    remat: bool = False,
    mask: Mask | None = None,
    diagnostics: bool = True,
):
    """Query loss after adapting `params` on `task.support`.

    Args:
      loss_fn: `loss_fn(params, batch) -> (loss, metrics)`.
      params: the meta-parameters (any pytree).
      task: a `fewjax.Task`.
      inner_steps, inner_lr, inner_optimizer, first_order, remat, mask: as `fewjax.adapt`'s `steps`, `lr`,
        `optimizer`, `first_order`, `remat`, `mask`.
      diagnostics: also report the losses before adaptation and the support loss after it (two extra forward
        passes, never differentiated).

    Returns:
      `(query_loss, metrics)`: `metrics` holds `loss`, `query_loss_after`, `support_loss_before` and the user's
      query metrics after adaptation under their own names; with `diagnostics` also `query_loss_before`,
      `support_loss_after` and the user's metrics before adaptation suffixed `_before`.
    """
    adapted, inner_losses = adapt(
        loss_fn, params, task.support, steps=inner_steps, lr=inner_lr, optimizer=inner_optimizer,
        first_order=first_order, remat=remat, mask=mask, return_losses=True,
    )
    query_loss, query_metrics = loss_fn(adapted, task.query)
    metrics = dict(query_metrics)
    metrics.update(loss=query_loss, query_loss_after=query_loss)
    if diagnostics:
        fixed = jax.lax.stop_gradient(params)
        before_loss, before_metrics = loss_fn(fixed, task.query)
        metrics.update({f"{k}_before": v for k, v in before_metrics.items()})
        metrics["query_loss_before"] = before_loss
        metrics["support_loss_after"] = loss_fn(jax.lax.stop_gradient(adapted), task.support)[0]
    if inner_steps > 0:
        metrics["support_loss_before"] = jax.lax.stop_gradient(inner_losses[0])
    return query_loss, metrics
