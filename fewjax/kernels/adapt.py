"""The inner loop shared by MAML, Meta-SGD, ANIL and Reptile.

`adapt` takes `steps` gradient steps of a user's `loss_fn(params, batch) -> (loss, metrics)` on one batch and
returns the adapted parameters. The loop is a `lax.scan`, so the compiled program has one body whatever the step
count, and it is differentiable: `jax.grad` through `adapt` gives the second-order MAML meta-gradient.

Example:
    >>> import jax, jax.numpy as jnp, fewjax
    >>> def loss_fn(w, batch):
    ...     return jnp.mean((batch.x * w - batch.y) ** 2), {}
    >>> batch = fewjax.Batch(x=jnp.array([1.0, 2.0]), y=jnp.array([2.0, 4.0]))
    >>> w = fewjax.adapt(loss_fn, jnp.array(0.0), batch, steps=3, lr=0.1)
    >>> round(float(w), 4)  # 0 -> 1.0 -> 1.5 -> 1.75
    1.75
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from fewjax.types import Batch, LossFn, Params

Mask = Any  # a pytree of bools like params, or a callable params -> such a pytree


def adapt(
    loss_fn: LossFn,
    params: Params,
    batch: Batch,
    *,
    steps: int,
    lr: float | jax.Array | Params | None = None,
    optimizer: optax.GradientTransformation | None = None,
    first_order: bool = False,
    remat: bool = False,
    mask: Mask | None = None,
    return_losses: bool = False,
    minibatches: bool = False,
    optimizer_state: Any = None,
    return_state: bool = False,
):
    """Adapts `params` to `batch` by `steps` steps of gradient descent.

    Args:
      loss_fn: `loss_fn(params, batch) -> (loss, metrics)`.
      params: any pytree of arrays.
      batch: the data the inner loop fits (a task's support set).
      steps: number of inner steps (a Python int; 0 returns `params`).
      lr: inner learning rate: a scalar, or a pytree like the adapted params (Meta-SGD: per-parameter rates that
        may themselves be meta-learned; gradients flow into them). Ignored, and must be None, with `optimizer`.
      optimizer: an optax transformation for the inner loop instead of plain SGD (its state starts fresh).
      first_order: stop gradients through the inner gradients (first-order MAML / Reptile): the meta-gradient
        then treats each inner gradient as a constant.
      remat: wrap each inner step in `jax.checkpoint`, so second-order MAML stores one step's activations at a
        time at the cost of recomputing the forward pass during the backward pass.
      mask: which leaves adapt (True) and which stay fixed (False): a pytree of bools with the structure of
        `params` or a function returning one (ANIL: only the head). Fixed leaves get no inner gradient at all.
      return_losses: also return the support loss at the start of each inner step, shape `[steps]`.
      minibatches: `batch` holds one mini-batch per step along a new leading axis of length `steps`, and step
        `i` fits `batch[i]` (Reptile's inner mini-batches: `fewjax.inner_minibatches`).
      optimizer_state: the state `optimizer` starts from, instead of `optimizer.init` (Reptile as Nichol et al.'s
        code runs it carries the inner Adam's state from task to task).
      return_state: also return the optimizer's state after the last step (None for plain SGD).

    Returns:
      The adapted params (same structure as `params`); with `return_losses` or `return_state` a tuple
      `(params, losses, state)` of what was asked for, in that order.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"adapt: steps must be a non-negative Python int, got {steps!r}.")
    if optimizer is not None and lr is not None:
        raise ValueError("adapt: pass either lr (plain SGD) or optimizer (an optax transformation), not both.")
    if optimizer is None and lr is None:
        raise ValueError("adapt: missing inner learning rate: pass lr=<float or pytree> or optimizer=<optax tx>.")
    if optimizer_state is not None and optimizer is None:
        raise ValueError("adapt: optimizer_state is the state of an optax optimizer: pass optimizer=<optax tx> too.")
    if minibatches and {x.shape[0] for x in jax.tree.leaves(batch)} != {steps}:
        raise ValueError(f"adapt: with minibatches=True every leaf of batch needs a leading axis of length steps="
                         f"{steps} (one mini-batch per step); got shapes {[x.shape for x in jax.tree.leaves(batch)]}.")

    keep = _mask_tree(mask, params)
    # The adapted leaves stay a pytree shaped like `params`, fixed leaves None, so an inner optax transformation
    # sees names (`optax.multi_transform` labels from paths: "encoder", "head"), never positions.
    fast = jax.tree.map(lambda p, k: p if k else None, params, keep)

    def merge(fast_tree):
        return jax.tree.map(lambda p, k, f: f if k else p, params, keep, fast_tree, is_leaf=lambda x: x is None)

    def support_loss(fast_tree, step_batch):
        loss, _ = loss_fn(merge(fast_tree), step_batch)
        return loss

    lr_fast = None if lr is None else _select_lr(lr, params, keep)
    opt_state = None if optimizer is None else optimizer.init(fast) if optimizer_state is None else optimizer_state

    def step(carry, step_batch):
        fast_tree, state = carry
        loss, grads = jax.value_and_grad(support_loss)(fast_tree, batch if step_batch is None else step_batch)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        if optimizer is None:
            fast_tree = jax.tree.map(lambda p, a, g: p - a * g, fast_tree, lr_fast, grads)
        else:
            updates, state = optimizer.update(grads, state, fast_tree)
            fast_tree = optax.apply_updates(fast_tree, updates)
        return (fast_tree, state), loss

    if remat:
        step = jax.checkpoint(step)
    if steps == 0:
        adapted, losses = params, jnp.zeros((0,))
    else:
        (fast, opt_state), losses = jax.lax.scan(step, (fast, opt_state), batch if minibatches else None,
                                                 length=steps)
        adapted = merge(fast)
    out = (adapted,) + (losses,) * return_losses + (opt_state,) * return_state
    return out if len(out) > 1 else adapted


def _mask_tree(mask, params):
    """A pytree of Python bools shaped like `params`: which leaves adapt."""
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    if callable(mask):
        mask = mask(params)
    if jax.tree.structure(mask) != jax.tree.structure(params):
        raise ValueError(
            "adapt: mask must have the same tree structure as params "
            f"(params: {jax.tree.structure(params)}, mask: {jax.tree.structure(mask)}); "
            "build it with jax.tree.map(lambda _: True, params)."
        )
    keep = jax.tree.map(bool, mask)
    if not any(jax.tree.leaves(keep)):
        raise ValueError("adapt: mask selects no parameter to adapt; set at least one leaf to True.")
    return keep


def _select_lr(lr, params, keep):
    """The inner rates of the adapted leaves, as a pytree like `params` with fixed leaves None."""
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(lr)) and jnp.ndim(lr) == 0:  # one scalar rate for all
        return jax.tree.map(lambda k: lr if k else None, keep)
    if jax.tree.structure(lr) != jax.tree.structure(params):
        raise ValueError(
            "adapt: lr must be a scalar or a pytree with the structure of params (Meta-SGD); "
            f"got structure {jax.tree.structure(lr)}, params have {jax.tree.structure(params)}."
        )
    return jax.tree.map(lambda a, k: a if k else None, lr, keep)
