"""MAML++ (Antoniou, Edwards & Storkey 2019, "How to train your MAML"): the kernel-level switches.

`mamlpp_loss` is MAML with four of the paper's changes, each a keyword:
- multi-step loss (`step_weights`): the query loss after *every* inner step, weighted; `mamlpp_step_weights` gives
  the paper's annealing (uniform at the start of training, all weight on the last step by the end);
- derivative-order annealing (`first_order`): first order early in training, second order later (the caller
  switches the flag at a step);
- LSLR, learned per-layer per-step inner learning rates (`inner_lr` a pytree like `params` whose leaves have shape
  `[inner_steps]`; `lslr_init` builds one): gradients flow into them, so they are meta-learned with `params`;
- per-step parameters (`step_params`, MAML++'s per-step batch-norm weights and biases): meta-learned, never
  adapted, one copy per inner step (leading axis `[inner_steps]`); `loss_fn` then receives `(phi, step_params[i])`
  at step `i`, for the support pass of that step and for the query pass after its update, as in the reference
  code. (fewjax's batch norm normalises with the statistics of the batch at hand, so statistics are per step and
  per task already.)
The fifth, cosine annealing of the outer learning rate, is an optax schedule (`optax.cosine_decay_schedule`, the
trainer's `optim.schedule="cosine"`). `fewjax.methods.mamlpp` puts all five together for the trainer.

With `step_weights=None` (only the last step), a scalar `inner_lr` and `first_order=False` it is `maml_loss`.

Example:
    >>> import functools, jax, jax.numpy as jnp, fewjax
    >>> def loss_fn(w, batch):
    ...     return jnp.mean((batch.x * w - batch.y) ** 2), {}
    >>> b = fewjax.Batch(x=jnp.array([0.5, 1.0]), y=jnp.array([0.2, 0.4]))
    >>> task = fewjax.Task(support=b, query=b)
    >>> params = {"w": jnp.array(1.0), "lr": fewjax.lslr_init(jnp.array(1.0), inner_steps=3, lr=0.5)}
    >>> def meta(p, task):
    ...     return fewjax.mamlpp_loss(loss_fn, p["w"], task, inner_steps=3, inner_lr=p["lr"],
    ...                               step_weights=fewjax.mamlpp_step_weights(0.0, inner_steps=3))
    >>> (loss, metrics), g = jax.value_and_grad(meta, has_aux=True)(params, task)
    >>> g["lr"].shape, metrics["query_losses"].shape
    ((3,), (3,))
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from fewjax.types import LossFn, Params, Task


def mamlpp_loss(
    loss_fn: LossFn,
    params: Params,
    task: Task,
    *,
    inner_steps: int,
    inner_lr: float | jax.Array | Params,
    step_weights: jax.Array | None = None,
    first_order: bool = False,
    remat: bool = False,
    step_params: Params | None = None,
):
    """Weighted sum over inner steps of the query loss after each step (MAML++'s multi-step loss).

    Args:
      loss_fn: `loss_fn(params, batch) -> (loss, metrics)`.
      params: the meta-parameters (any pytree).
      task: a `fewjax.Task`.
      inner_steps: gradient steps on the support set (Python int >= 1).
      inner_lr: a scalar; a pytree like `params` of scalars (per layer) or of `[inner_steps]` vectors (LSLR: per
        layer and step). Gradients flow into it.
      step_weights: `[inner_steps]` weights of the query loss after each step; None: the last step only (MAML).
      first_order: treat the inner gradients as constants (first-order MAML; MAML++ anneals from True to False).
      remat: recompute each inner step in the backward pass instead of storing its activations.
      step_params: None, or a pytree whose leaves have a leading `[inner_steps]` axis: parameters used, not
        adapted, at each step (`loss_fn` receives `(phi, step_params[i])`). Gradients flow into them.

    Returns:
      `(loss, metrics)`: `metrics` holds `loss` (the weighted sum), `query_loss_after` (after the last step),
      `query_losses` (`[inner_steps]`), `support_loss_before` and the user's query metrics after the last step.
    """
    _check_steps(inner_steps, step_params)
    if step_weights is None:
        step_weights = jnp.zeros((inner_steps,)).at[-1].set(1.0)
    if jnp.shape(step_weights) != (inner_steps,):
        raise ValueError(f"mamlpp_loss: step_weights must have shape ({inner_steps},) (one weight per inner step), "
                         f"got {jnp.shape(step_weights)}.")
    inner = _inner_step(loss_fn, task.support, first_order=first_order)

    def step(phi, per_step):
        phi, support_loss = inner(phi, per_step)
        query_loss, query_metrics = loss_fn(_at_step(phi, per_step), task.query)
        return phi, (support_loss, query_loss, query_metrics)

    if remat:
        step = jax.checkpoint(step)
    per_step = (_per_step_rates(inner_lr, params, inner_steps), step_params)
    _, (support_losses, query_losses, query_metrics) = jax.lax.scan(step, params, per_step)
    loss = jnp.sum(jnp.asarray(step_weights, query_losses.dtype) * query_losses)
    metrics = {k: v[-1] for k, v in query_metrics.items()}
    metrics.update(loss=loss, query_loss_after=query_losses[-1], query_losses=jax.lax.stop_gradient(query_losses),
                   support_loss_before=jax.lax.stop_gradient(support_losses[0]))
    return loss, metrics


def mamlpp_adapt(
    loss_fn: LossFn,
    params: Params,
    support,
    *,
    inner_steps: int,
    inner_lr: float | jax.Array | Params,
    step_params: Params | None = None,
) -> Params:
    """The inner loop of `mamlpp_loss` alone: `params` after `inner_steps` steps on `support` (a `fewjax.Batch`).

    With `step_params`, predict with `(adapted, last)` where `last` is `step_params` at the last step, as the query
    loss of `mamlpp_loss` does.
    """
    _check_steps(inner_steps, step_params)
    inner = _inner_step(loss_fn, support, first_order=False)
    per_step = (_per_step_rates(inner_lr, params, inner_steps), step_params)
    phi, _ = jax.lax.scan(inner, params, per_step)
    return phi


def _inner_step(loss_fn, support, *, first_order):
    """`(phi, (rates_i, step_params_i)) -> (phi after step i, support loss before it)`."""
    def step(phi, per_step):
        rate_i, _ = per_step
        support_loss, grads = jax.value_and_grad(lambda p: loss_fn(_at_step(p, per_step), support)[0])(phi)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        return jax.tree.map(lambda p, a, g: p - a * g, phi, rate_i, grads), support_loss

    return step


def _at_step(phi, per_step):
    """What `loss_fn` receives at a step: `phi`, or `(phi, step_params_i)` with per-step parameters."""
    return phi if per_step[1] is None else (phi, per_step[1])


def _check_steps(inner_steps, step_params):
    if not isinstance(inner_steps, int) or isinstance(inner_steps, bool) or inner_steps < 1:
        raise ValueError(f"mamlpp_loss: inner_steps must be a Python int >= 1, got {inner_steps!r}.")
    bad = [jnp.shape(x) for x in jax.tree.leaves(step_params) if jnp.shape(x)[:1] != (inner_steps,)]
    if bad:
        raise ValueError(f"mamlpp_loss: every step_params leaf needs a leading axis of inner_steps={inner_steps} "
                         f"(one copy per inner step); got shapes {bad}.")


def mamlpp_step_weights(progress: float | jax.Array, *, inner_steps: int, min_weight: float = 0.03) -> jax.Array:
    """MAML++'s annealed multi-step loss weights (Antoniou et al.'s `get_per_step_loss_importance_vector`).

    `progress` is the current epoch over the number of epochs the multi-step loss lasts (0 at the start, 1 at the
    end; may be traced). At 0 every step weighs `1/N`; the non-final weights then fall linearly to
    `min_weight/N` and the last one rises to `1 - (N - 1) min_weight / N`. The weights always sum to 1.
    """
    n = inner_steps
    t = jnp.maximum(jnp.asarray(progress, jnp.float32), 0.0)
    early = jnp.maximum(1.0 / n - t / n, min_weight / n)
    last = jnp.minimum(1.0 / n + t * (n - 1) / n, 1.0 - (n - 1) * min_weight / n)
    return jnp.concatenate([jnp.broadcast_to(early, (n - 1,)), last[None]])


def lslr_init(params: Params, *, inner_steps: int, lr: float) -> Params:
    """LSLR's learnable rates: a pytree like `params` with a `[inner_steps]` vector of `lr` per parameter tensor."""
    return jax.tree.map(lambda p: jnp.full((inner_steps,), lr, jnp.result_type(p)), params)


def _per_step_rates(inner_lr, params, inner_steps):
    """The rates as a pytree like `params` whose leaves have a leading `[inner_steps]` axis (scanned over)."""
    leaves, treedef = jax.tree.flatten(params)
    lr_leaves, lr_def = jax.tree.flatten(inner_lr)
    if jax.tree_util.treedef_is_leaf(lr_def) and jnp.ndim(inner_lr) == 0:
        return treedef.unflatten([jnp.broadcast_to(inner_lr, (inner_steps,))] * len(leaves))
    if lr_def != treedef:
        raise ValueError(f"mamlpp_loss: inner_lr must be a scalar or a pytree like params (per layer, or LSLR: "
                         f"[inner_steps] per layer); got structure {lr_def}, params have {treedef}.")
    out = []
    for a in lr_leaves:
        if jnp.ndim(a) == 0:
            a = jnp.broadcast_to(a, (inner_steps,))
        elif jnp.shape(a) != (inner_steps,):
            raise ValueError(f"mamlpp_loss: each inner_lr leaf must be a scalar or have shape ({inner_steps},) "
                             f"(LSLR), got {jnp.shape(a)}.")
        out.append(a)
    return treedef.unflatten(out)
