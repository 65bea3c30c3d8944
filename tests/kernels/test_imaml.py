"""iMAML: the implicit meta-gradient against a closed form, unrolled MAML, and under jit / vmap / over_tasks."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import fewjax
from tests.kernels.conftest import loss_fn, make_params, make_task

pytestmark = pytest.mark.usefixtures("x64")


# A quadratic support loss 0.5 (phi - a)^T A (phi - a) and a non-quadratic query loss, on pytree params. The batch
# carries x = (A, c), y = a; the loss is 0.5 (phi - a)^T A (phi - a) + c . sin(phi) (c = 0 on the support).
def quad_loss(params, batch):
    phi, _ = ravel_pytree(params)
    (mat, c), a = batch.x, batch.y
    d = phi - a
    return 0.5 * d @ mat @ d + c @ jnp.sin(phi), {"phi0": phi[0]}


def quad_problem(seed=0, n=5):
    r = np.random.default_rng(seed)
    q, _ = np.linalg.qr(r.normal(size=(n, n)))
    mat = q @ np.diag(np.linspace(0.5, 2.0, n)) @ q.T  # SPD, eigenvalues 0.5 .. 2
    b = q @ np.diag(np.linspace(0.3, 1.0, n)) @ q.T
    support = fewjax.Batch((jnp.asarray(mat), jnp.zeros(n)), jnp.asarray(r.normal(size=n)))
    query = fewjax.Batch((jnp.asarray(b), jnp.asarray(r.normal(size=n))), jnp.asarray(r.normal(size=n)))
    theta = {"w": jnp.asarray(r.normal(size=n - 2)), "b": jnp.asarray(r.normal(size=2))}
    return theta, fewjax.Task(support, query)


@pytest.mark.parametrize("hvp", ["forward", "reverse"])
def test_quadratic_inner_problem_gives_the_closed_form_value_and_implicit_gradient(hvp):
    lam = 1.0
    theta, task = quad_problem()
    (mat, _), a = task.support.x, task.support.y
    n = a.shape[0]

    def closed_form(theta):  # phi* = (A + lam I)^-1 (A a + lam theta), differentiated by JAX
        flat, unravel = ravel_pytree(theta)
        phi = jnp.linalg.solve(mat + lam * jnp.eye(n), mat @ a + lam * flat)
        return quad_loss(unravel(phi), task.query)[0]

    # lr 1/3: the regularised Hessian has eigenvalues in [1.5, 3], so each step halves the error: 80 steps converge.
    kw = dict(inner_steps=80, inner_lr=1.0 / 3.0, lam=lam, cg_steps=n, hvp=hvp)
    (value, metrics), grad = jax.jit(jax.value_and_grad(
        functools.partial(fewjax.imaml_loss, quad_loss, **kw), has_aux=True))(theta, task)
    expected_value, expected_grad = jax.value_and_grad(closed_form)(theta)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    chex.assert_trees_all_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    # ... and it is lam (A + lam I)^-1 grad_query(phi*), the formula of the paper.
    flat, unravel = ravel_pytree(theta)
    phi = jnp.linalg.solve(mat + lam * jnp.eye(n), mat @ a + lam * flat)
    g = ravel_pytree(jax.grad(lambda p: quad_loss(p, task.query)[0])(unravel(phi)))[0]
    np.testing.assert_allclose(ravel_pytree(grad)[0], lam * jnp.linalg.solve(mat + lam * jnp.eye(n), g), rtol=1e-10)
    assert float(metrics["inner_grad_norm"]) < 1e-12
    np.testing.assert_allclose(metrics["phi0"], phi[0], rtol=1e-12)


def test_fewer_cg_steps_approximate_and_cg_steps_zero_is_the_query_gradient():
    theta, task = quad_problem(1)
    kw = dict(inner_steps=80, inner_lr=1.0 / 3.0, lam=1.0)
    grad = lambda **k: ravel_pytree(jax.jit(jax.grad(
        lambda p: fewjax.imaml_loss(quad_loss, p, task, **kw, **k)[0]))(theta))[0]
    exact, two = grad(cg_steps=5), grad(cg_steps=2)
    assert 0 < float(jnp.linalg.norm(two - exact)) < 0.1 * float(jnp.linalg.norm(exact))
    phi = jax.jit(lambda theta: fewjax.adapt(lambda p, b: (quad_loss(p, b)[0] + 0.5 * sum(
        jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(theta))), {}),
        theta, task.support, steps=80, lr=1.0 / 3.0))(theta)
    first_order = ravel_pytree(jax.grad(lambda p: quad_loss(p, task.query)[0])(phi))[0]
    np.testing.assert_allclose(grad(cg_steps=0), first_order, rtol=1e-12)


def test_damping_solves_the_damped_system():
    lam, damping = 2.0, 1.0
    theta, task = quad_problem(2)
    mat, n = task.support.x[0], task.support.y.shape[0]
    kw = dict(inner_steps=80, inner_lr=1.0 / 4.0, lam=lam, cg_steps=n)
    grad = jax.jit(jax.grad(lambda p: fewjax.imaml_loss(quad_loss, p, task, cg_damping=damping, **kw)[0]))(theta)
    phi_grad = jax.jit(jax.grad(lambda p: fewjax.imaml_loss(quad_loss, p, task, **{
        **kw, "cg_steps": 0})[0]))(theta)  # = grad_query(phi*)
    expected = jnp.linalg.solve((1 + damping) * jnp.eye(n) + mat / lam, ravel_pytree(phi_grad)[0])
    np.testing.assert_allclose(ravel_pytree(grad)[0], expected, rtol=1e-10)


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_conjugate_gradient_equals_jax_scipy_cg(steps):
    from fewjax.kernels.imaml import _cg

    r = np.random.default_rng(3)
    m = r.normal(size=(6, 6))
    mat = jnp.asarray(m @ m.T + 0.5 * np.eye(6))
    b = {"u": jnp.asarray(r.normal(size=4)), "v": jnp.asarray(r.normal(size=2))}
    matvec = lambda t: (lambda y: {"u": y[:4], "v": y[4:]})(mat @ jnp.concatenate([t["u"], t["v"]]))
    ours = jax.jit(lambda b: _cg(matvec, b, steps=steps, tol=0.0))(b)
    theirs = jax.scipy.sparse.linalg.cg(matvec, b, maxiter=steps, tol=0.0)[0]
    chex.assert_trees_all_close(ours, theirs, rtol=1e-9, atol=1e-12)


def prox_unrolled(params, task, *, steps, lr, lam):
    """Unrolled second-order MAML on the proximal-regularised support loss (the gradient through every step)."""
    def prox_loss(p, batch):
        dist = sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(params)))
        return loss_fn(p, batch)[0] + 0.5 * lam * dist, {}

    adapted = fewjax.adapt(prox_loss, params, task.support, steps=steps, lr=lr)
    return loss_fn(adapted, task.query)[0]


def test_matches_unrolled_maml_with_the_proximal_term_in_the_many_step_limit():
    params, task = make_params(0), make_task(1)
    kw = dict(lr=0.2, lam=4.0)  # the regularised inner problem contracts fast: 60 steps reach its minimiser
    implicit = jax.jit(jax.grad(lambda p: fewjax.imaml_loss(
        loss_fn, p, task, inner_steps=60, inner_lr=kw["lr"], lam=kw["lam"], cg_steps=40)[0]))(params)
    unrolled = jax.jit(jax.grad(functools.partial(prox_unrolled, steps=60, **kw)))(params, task)
    chex.assert_trees_all_close(implicit, unrolled, rtol=1e-7, atol=1e-10)
    few = jax.jit(jax.grad(functools.partial(prox_unrolled, steps=2, **kw)))(params, task)  # far from the limit, the two differ
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(few), jax.tree.leaves(unrolled))) > 1e-4


KW = dict(inner_steps=5, inner_lr=0.2, lam=2.0, cg_steps=4)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_jit_and_eager_agree(jit):
    # Eager dispatch compiles op by op (slow on a busy CPU): a tiny problem, diagnostics checked under jit only.
    params, task = make_params(2, d_h=2), make_task(3, n_s=3, n_q=3)
    kernel = functools.partial(fewjax.imaml_loss, loss_fn, **{**KW, "inner_steps": 2, "cg_steps": 2})
    f = jax.value_and_grad(functools.partial(kernel, diagnostics=jit), has_aux=True)
    out = (jax.jit(f) if jit else f)(params, task)
    reference = jax.jit(jax.value_and_grad(kernel, has_aux=True))(params, task)
    chex.assert_trees_all_close(out[1], reference[1], rtol=1e-12, atol=1e-14)
    chex.assert_trees_all_close(out[0][1]["loss"], reference[0][1]["loss"], rtol=1e-12, atol=1e-14)
    if not jit:
        return
    (_, metrics), _ = out
    assert set(metrics) >= {"loss", "accuracy", "query_loss_after", "query_loss_before", "support_loss_before",
                            "support_loss_after", "accuracy_before", "prox_sq_dist", "inner_grad_norm"}
    assert float(metrics["support_loss_after"]) < float(metrics["support_loss_before"])


def test_over_tasks_vmap_and_chunks_equal_a_loop_over_tasks():
    params = make_params(4)
    tasks = [make_task(10 + i) for i in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)
    kernel = functools.partial(fewjax.imaml_loss, loss_fn, diagnostics=False, **KW)
    one = jax.jit(jax.value_and_grad(kernel, has_aux=True))
    loop = jax.tree.map(lambda *xs: sum(xs) / len(xs), *[one(params, t) for t in tasks])
    vmapped = jax.jit(jax.value_and_grad(fewjax.over_tasks(kernel), has_aux=True))(params, stacked)
    chunked = jax.jit(fewjax.over_tasks_value_and_grad(kernel, chunk_size=1))(params, stacked)
    for out in (vmapped, chunked):  # accuracy is float32 (a mean of bools): compared at float32 precision
        chex.assert_trees_all_close((out[0][0], out[1]), (loop[0][0], loop[1]), rtol=1e-10, atol=1e-12)
        chex.assert_trees_all_close(out[0][1], loop[0][1], rtol=1e-6)


def test_optax_sgd_inner_optimizer_equals_inner_lr():
    params, task = make_params(5), make_task(6)
    kw = {k: v for k, v in KW.items() if k != "inner_lr"}
    g1 = jax.jit(jax.grad(lambda p: fewjax.imaml_loss(loss_fn, p, task, inner_lr=0.2, **kw)[0]))(params)
    g2 = jax.jit(jax.grad(
        lambda p: fewjax.imaml_loss(loss_fn, p, task, inner_optimizer=optax.sgd(0.2), **kw)[0]))(params)
    chex.assert_trees_all_close(g1, g2, rtol=1e-12)


def test_memory_does_not_grow_with_inner_steps():
    params, task = make_params(7), make_task(8)

    def temp_bytes(kernel, steps):
        f = jax.jit(jax.grad(lambda p: kernel(loss_fn, p, task, inner_steps=steps, inner_lr=0.1, **kw)[0]))
        return f.lower(params).compile().memory_analysis().temp_size_in_bytes

    kw = dict(lam=1.0, cg_steps=3, diagnostics=False)
    assert temp_bytes(fewjax.imaml_loss, 2) == temp_bytes(fewjax.imaml_loss, 20)
    kw = dict(diagnostics=False)
    assert temp_bytes(fewjax.maml_loss, 20) > temp_bytes(fewjax.maml_loss, 2)  # the tape of unrolled MAML


@pytest.mark.parametrize("bad, message", [
    (dict(inner_steps=0), "inner_steps must be a Python int >= 1"),
    (dict(inner_steps=2.0), "inner_steps must be a Python int"),
    (dict(cg_steps=-1), "cg_steps must be a Python int >= 0"),
    (dict(lam=0.0), "lam must be > 0"),
    (dict(lam=-1.0), "lam must be > 0"),
    (dict(lam=jnp.ones(3)), "lam must be a scalar"),
    (dict(inner_lr=0.0), "inner_lr must be > 0"),
    (dict(inner_lr=None), "missing inner learning rate"),
    (dict(inner_optimizer=optax.sgd(0.1)), "either inner_lr"),
    (dict(cg_damping=-0.5), "cg_damping must be >= 0"),
    (dict(hvp="fwd"), "hvp='fwd'"),
])
def test_bad_hyperparameters_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        fewjax.imaml_loss(loss_fn, make_params(0), make_task(1), **{**KW, **bad})
