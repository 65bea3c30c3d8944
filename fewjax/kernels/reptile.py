"""Reptile (Nichol, Achiam & Schulman 2018) as a pseudo-gradient.

`reptile_grad` adapts a copy of the parameters with `adapt` and returns `params - adapted`. Handing it to any
optax optimizer as a gradient gives the Reptile outer update; plain SGD with rate e gives
`theta + e * (phi - theta)`, the update of the paper.

Inner data: with `use_query=True` (the default) the inner loop trains on support and query concatenated, as
Reptile has no separate query loss at training time; with `use_query=False` it trains on the support set only.
The inner loop takes full-batch steps on that data, or, with `inner_batch_size=B` and a key, steps on mini-batches
of B examples drawn as Nichol et al.'s code draws them (`inner_minibatches`: shuffled epochs, without replacement).

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
    inner_batch_size: int | None = None,
    rng: jax.Array | None = None,
    inner_state=None,
):
    """Reptile's pseudo-gradient `params - adapted` for one task.

    `inner_batch_size`: None takes every inner step on all the inner data; an int B takes step i on the i-th
    mini-batch of `inner_minibatches(data, batch_size=B, steps=inner_steps, rng=rng)`.

    `inner_state`: the state `inner_optimizer` starts from (Nichol et al.'s code never resets its inner Adam, so
    its moment estimates run on across tasks); None starts it afresh.

    Returns:
      `(pseudo_grad, metrics)`: `pseudo_grad` has the structure of `params` and carries no gradient;
      `metrics` holds `loss` (inner loss after adaptation) and `inner_loss_before`, plus the user's metrics
      after adaptation on the inner data. With `inner_state`, `(pseudo_grad, metrics, inner_state_after)`.
    """
    if inner_steps < 1:
        raise ValueError(f"reptile_grad: inner_steps must be >= 1, got {inner_steps}.")
    data = _concat(task.support, task.query) if use_query else task.support
    params = jax.lax.stop_gradient(params)
    if inner_batch_size is None:
        inner_data = data
    elif rng is None:
        raise ValueError("reptile_grad: inner_batch_size needs rng=<a PRNG key> to draw the mini-batches.")
    else:
        inner_data = inner_minibatches(data, batch_size=inner_batch_size, steps=inner_steps, rng=rng)
    adapted, losses, state = adapt(
        loss_fn, params, inner_data, steps=inner_steps, lr=inner_lr, optimizer=inner_optimizer,
        first_order=True, mask=mask, return_losses=True, minibatches=inner_batch_size is not None,
        optimizer_state=inner_state, return_state=True,
    )
    after, after_metrics = loss_fn(adapted, data)
    metrics = dict(after_metrics)
    metrics.update(loss=after, inner_loss_before=losses[0])
    pseudo_grad = jax.tree.map(jnp.subtract, params, adapted)
    return (pseudo_grad, metrics) if inner_state is None else (pseudo_grad, metrics, state)


def inner_minibatches(data: Batch, *, batch_size: int, steps: int, rng: jax.Array) -> Batch:
    """`steps` mini-batches of `batch_size` examples of `data`, stacked on a new leading axis.

    As `_mini_batches(..., replacement=False)` in Nichol et al.'s code: the examples are shuffled and cut into
    batches in order; when an epoch runs out, a new shuffle continues it (a batch may straddle two epochs).

    Example:
        >>> import jax, jax.numpy as jnp, fewjax
        >>> b = fewjax.Batch(x=jnp.arange(4.0), y=jnp.arange(4))
        >>> mb = fewjax.inner_minibatches(b, batch_size=2, steps=4, rng=jax.random.PRNGKey(0))
        >>> mb.x.shape, sorted(mb.x[:2].ravel().tolist()) == [0.0, 1.0, 2.0, 3.0]
        ((4, 2), True)
    """
    n = {x.shape[0] for x in jax.tree.leaves(data)}
    if len(n) != 1:
        raise ValueError(f"inner_minibatches: every leaf of data needs the same number of examples, got {n}.")
    n = n.pop()
    if not 1 <= batch_size <= n:
        raise ValueError(f"inner_minibatches: batch_size={batch_size} must be between 1 and the {n} examples of the "
                         "inner data (support, plus query with use_query=True).")
    epochs = -(-steps * batch_size // n)
    order = jnp.concatenate([jax.random.permutation(k, n) for k in jax.random.split(rng, epochs)])
    order = order[:steps * batch_size].reshape(steps, batch_size)
    return jax.tree.map(lambda x: x[order], data)


def _concat(a: Batch, b: Batch) -> Batch:
    return jax.tree.map(lambda u, v: jnp.concatenate([u, v], axis=0), a, b)
