"""iMAML (Rajeswaran, Finn, Kakade & Levine 2019): meta-learning with implicit gradients.

The inner problem is regularised towards the meta-parameters `theta`:

    phi*(theta) = argmin_phi  L_support(phi) + lam / 2 * |phi - theta|^2,

solved approximately by `inner_steps` gradient steps from `theta` (`fewjax.adapt`, no gradient tape through
them). At a minimiser, the implicit function theorem gives `d phi* / d theta = (I + H / lam)^-1` with `H` the
Hessian of the support loss at `phi*`, so the meta-gradient of the query loss is

    d L_query(phi*) / d theta = (I + H / lam)^-1 g,    g = grad L_query(phi*),

which `imaml_loss` solves by conjugate gradient (`cg_steps` iterations from 0, the iterates of
`jax.scipy.sparse.linalg.cg` with `maxiter=cg_steps`, in a loop that traces the product once) on
Hessian-vector products: `hvp="forward"` takes them as `jax.jvp` of `jax.grad` (forward over reverse, the cheaper
one), `hvp="reverse"` (the default) as `jax.grad` of `<jax.grad, v>`, which also works through layers written as
`jax.custom_vjp` (fewjax's CPU convolution and pooling: JAX cannot take a `jvp` of those). The kernel is a `jax.custom_vjp`: `jax.grad`, `jax.vmap`,
`fewjax.over_tasks` and `jax.jit` use it like `maml_loss`, and the memory of a meta-gradient does not grow with
`inner_steps` (the backward pass keeps only `phi` and the task).

The gradient flows from the returned loss only: the metrics are values, never differentiated. It is the
implicit gradient of the *exact* inner minimiser; how close `phi` is to one shows in the diagnostic
`inner_grad_norm` (the gradient norm of the regularised inner objective at `phi`).

Example:
    >>> import functools, jax, jax.numpy as jnp, fewjax
    >>> def loss_fn(w, batch):
    ...     return jnp.mean((batch.x * w - batch.y) ** 2), {}
    >>> b = fewjax.Batch(x=jnp.array([0.5, 1.0]), y=jnp.array([0.2, 0.4]))
    >>> task = fewjax.Task(support=b, query=b)
    >>> meta = functools.partial(fewjax.imaml_loss, loss_fn, inner_steps=20, inner_lr=0.3, lam=1.0, cg_steps=5)
    >>> (loss, metrics), g = jax.value_and_grad(meta, has_aux=True)(jnp.array(1.0), task)
    >>> bool(metrics["query_loss_after"] < metrics["query_loss_before"]), g.shape
    (True, ())
"""
from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import optax

from fewjax.kernels.adapt import adapt
from fewjax.types import LossFn, Params, Task

HVPS = ("forward", "reverse")


def imaml_loss(
    loss_fn: LossFn,
    params: Params,
    task: Task,
    *,
    inner_steps: int,
    inner_lr: float | jax.Array | None = None,
    lam: float | jax.Array,
    cg_steps: int,
    cg_damping: float = 0.0,
    cg_tol: float = 1e-10,
    inner_optimizer: optax.GradientTransformation | None = None,
    hvp: str = "reverse",
    diagnostics: bool = True,
):
    """Query loss at the regularised inner solution; its gradient w.r.t. `params` is the implicit meta-gradient.

    Args:
      loss_fn: `loss_fn(params, batch) -> (loss, metrics)`.
      params: the meta-parameters `theta` (any pytree of float arrays).
      task: a `fewjax.Task`.
      inner_steps: gradient steps on `L_support(phi) + lam/2 |phi - theta|^2` from `phi = theta` (Python int >= 1).
      inner_lr: the inner step size (a scalar); or None with `inner_optimizer` (an optax transformation).
      lam: the proximal strength `lambda` (> 0): larger keeps `phi` closer to `theta`.
      cg_steps: conjugate-gradient iterations for `(I + H/lam) x = g` (Python int >= 0). 0 skips the solve and
        returns `g` itself (the first-order approximation, `(I + H/lam)^-1 ~ I`).
      cg_damping: solve `((1 + cg_damping) I + H/lam) x = g` instead: a damped, better conditioned system where
        the support Hessian is indefinite (the iMAML reference code uses 1.0; the gradient shrinks by about
        `1 + cg_damping`). 0 (the default) is the exact implicit gradient.
      cg_tol: relative residual at which conjugate gradient stops before `cg_steps`.
      inner_optimizer: an optax transformation for the inner loop instead of plain SGD (its state starts fresh).
      hvp: how Hessian-vector products are taken: "forward" (`jax.jvp` of `jax.grad`) or "reverse" (`jax.grad`
        of an inner product with `jax.grad`; needed when `loss_fn` uses `jax.custom_vjp` layers).
      diagnostics: also report losses before adaptation, the support loss after it, `prox_sq_dist`
        (`|phi - theta|^2`) and `inner_grad_norm` (a few extra passes, never differentiated).

    Returns:
      `(query_loss, metrics)`: `metrics` holds `loss`, `query_loss_after`, `support_loss_before` and the user's
      query metrics after adaptation under their own names; with `diagnostics` also `query_loss_before`,
      `support_loss_after`, `prox_sq_dist`, `inner_grad_norm` and the user's metrics before adaptation suffixed
      `_before`.
    """
    _check_arguments(params, inner_steps=inner_steps, inner_lr=inner_lr, lam=lam, cg_steps=cg_steps,
                     cg_damping=cg_damping, cg_tol=cg_tol, inner_optimizer=inner_optimizer, hvp=hvp)

    def support_loss(phi, batch):
        return loss_fn(phi, batch)[0]

    def solve(theta, task, lam, lr):
        prox_loss = _proximal(loss_fn, theta, lam)
        phi, inner_losses = imaml_adapt(loss_fn, theta, task.support, lam=lam, inner_steps=inner_steps,
                                        inner_lr=None if inner_optimizer is not None else lr,
                                        inner_optimizer=inner_optimizer, return_losses=True)
        query_loss, query_metrics = loss_fn(phi, task.query)
        metrics = dict(query_metrics)
        # At step 0 phi = theta, so the regularised loss is the plain support loss.
        metrics.update(loss=query_loss, query_loss_after=query_loss, support_loss_before=inner_losses[0])
        if diagnostics:
            before_loss, before_metrics = loss_fn(theta, task.query)
            metrics.update({f"{k}_before": v for k, v in before_metrics.items()})
            metrics["query_loss_before"] = before_loss
            support_after, prox_grad = jax.value_and_grad(lambda p: prox_loss(p, task.support)[0])(phi)
            metrics["support_loss_after"] = support_after - 0.5 * lam * _sq_dist(phi, theta)
            metrics["prox_sq_dist"] = _sq_dist(phi, theta)
            metrics["inner_grad_norm"] = jnp.sqrt(_sq_dist(prox_grad, jax.tree.map(jnp.zeros_like, prox_grad)))
        return phi, (query_loss, metrics)

    @jax.custom_vjp
    def implicit(theta, task, lam, lr):
        return solve(theta, task, lam, lr)[1]

    def fwd(theta, task, lam, lr):
        phi, out = solve(theta, task, lam, lr)
        g = jax.grad(support_loss)(phi, task.query)
        return out, (phi, g, task, lam)

    def bwd(residuals, cotangents):
        phi, g, task, lam = residuals
        ct = cotangents[0]  # the metrics' cotangents are ignored: only the loss is differentiated
        if cg_steps == 0:
            x = g
        else:
            grad_support = jax.grad(support_loss)

            def matvec(v):
                if hvp == "forward":
                    hv = jax.jvp(lambda p: grad_support(p, task.support), (phi,), (v,))[1]
                else:
                    hv = jax.grad(lambda p: _vdot(grad_support(p, task.support), v))(phi)
                return jax.tree.map(lambda a, b: (1.0 + cg_damping) * a + (b / lam).astype(a.dtype), v, hv)

            x = _cg(matvec, g, steps=cg_steps, tol=cg_tol)
        grads = jax.tree.map(lambda a: (ct * a).astype(a.dtype), x)
        return grads, None, None, None

    implicit.defvjp(fwd, bwd)
    lr = inner_lr if inner_optimizer is None else jnp.zeros(())
    return implicit(params, task, lam, lr)


def imaml_adapt(loss_fn: LossFn, params: Params, batch, *, lam, inner_steps: int, inner_lr=None,
                inner_optimizer: optax.GradientTransformation | None = None, return_losses: bool = False):
    """iMAML's inner problem: `inner_steps` of descent on `loss + lam / 2 * ||phi - params||^2` from `params`.

    The task-specific weights `imaml_loss` differentiates implicitly; `fewjax.load(...).adapt` uses it directly.
    """
    return adapt(_proximal(loss_fn, params, lam), params, batch, steps=inner_steps, lr=inner_lr,
                 optimizer=inner_optimizer, return_losses=return_losses)


def _proximal(loss_fn, theta, lam):
    def prox_loss(phi, batch):
        loss, _ = loss_fn(phi, batch)
        return loss + 0.5 * lam * _sq_dist(phi, theta), {}

    return prox_loss


def _check_arguments(params, *, inner_steps, inner_lr, lam, cg_steps, cg_damping, cg_tol, inner_optimizer, hvp):
    """One clear ValueError for a bad `imaml_loss` argument, before anything is traced."""
    _check_int("inner_steps", inner_steps, 1)
    _check_int("cg_steps", cg_steps, 0)
    _check_positive("lam", lam)
    _check_positive("cg_damping", cg_damping, strict=False)
    _check_positive("cg_tol", cg_tol, strict=False)
    if hvp not in HVPS:
        raise ValueError(f"imaml_loss: hvp={hvp!r}; choose one of {HVPS}.")
    if inner_optimizer is not None and inner_lr is not None:
        raise ValueError("imaml_loss: pass either inner_lr (plain SGD) or inner_optimizer (optax), not both.")
    if inner_optimizer is None:
        if inner_lr is None:
            raise ValueError(
                "imaml_loss: missing inner learning rate: pass inner_lr=<float> or inner_optimizer=<optax tx>.")
        if jnp.ndim(inner_lr) != 0:
            raise ValueError(f"imaml_loss: inner_lr must be a scalar, got shape {jnp.shape(inner_lr)}.")
        _check_positive("inner_lr", inner_lr)
    for leaf in jax.tree.leaves(params):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(
                f"imaml_loss: params must be floating-point arrays; got a leaf of dtype {jnp.result_type(leaf)}.")


def _cg(matvec, b, *, steps, tol):
    """Conjugate gradient for `matvec(x) = b` from `x = 0`: `steps` iterations, fewer once `|r| <= tol |b|`.

    `jax.scipy.sparse.linalg.cg` computes the same iterates (tested), but traces `matvec` three times (initial
    residual, loop body, and `lax.custom_linear_solve`'s transpose); here it is traced once, which matters when a
    Hessian-vector product of a network is a large program. Not differentiable (it runs in a backward pass).
    """
    rs0 = _vdot(b, b)
    stop = (tol ** 2) * rs0

    def body(carry, _):
        x, r, p, rs = carry
        ap = matvec(p)
        pap = _vdot(p, ap)
        go = (rs > stop) & (pap != 0)
        alpha = jnp.where(go, rs / jnp.where(go, pap, 1), 0)
        x = jax.tree.map(lambda x, p: x + (alpha * p).astype(x.dtype), x, p)
        r = jax.tree.map(lambda r, ap: r - (alpha * ap).astype(r.dtype), r, ap)
        rs_new = _vdot(r, r)
        beta = jnp.where(go, rs_new / jnp.where(go, rs, 1), 0)
        p = jax.tree.map(lambda r, p: r + (beta * p).astype(r.dtype), r, p)
        return (x, r, p, jnp.where(go, rs_new, rs)), None

    x0 = jax.tree.map(jnp.zeros_like, b)
    return jax.lax.scan(body, (x0, b, b, rs0), None, length=steps)[0][0]


def _vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _sq_dist(a, b):
    return sum(jnp.sum(jnp.square(x - y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _check_int(name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"imaml_loss: {name} must be a Python int >= {minimum}, got {value!r}.")


def _check_positive(name, value, strict=True):
    """Checks a concrete value (Python number or concrete array); traced values pass unchecked."""
    if isinstance(value, jax.core.Tracer):
        return
    if not isinstance(value, numbers.Real):
        if jnp.ndim(value) != 0:
            raise ValueError(f"imaml_loss: {name} must be a scalar, got shape {jnp.shape(value)}.")
        value = float(value)
    if not (value > 0 if strict else value >= 0) or value != value:
        raise ValueError(f"imaml_loss: {name} must be {'> 0' if strict else '>= 0'}, got {value!r}.")
