"""MAML++ kernel: reduces to MAML, multi-step loss = weighted MAML losses, LSLR gradients, annealed weights."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax
from tests.kernels.conftest import finite_difference_grad, loss_fn, make_params, make_task

pytestmark = pytest.mark.usefixtures("x64")


def value_and_grad(f, *args):
    return jax.jit(jax.value_and_grad(f))(*args)


def test_last_step_only_with_a_scalar_rate_is_maml():
    params, task = make_params(0), make_task(1)
    pp = lambda p: fewjax.mamlpp_loss(loss_fn, p, task, inner_steps=3, inner_lr=0.3)[0]
    maml = lambda p: fewjax.maml_loss(loss_fn, p, task, inner_steps=3, inner_lr=0.3)[0]
    chex.assert_trees_all_close(value_and_grad(pp, params), value_and_grad(maml, params), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("first_order", [False, True])
def test_multi_step_loss_is_the_weighted_sum_of_maml_losses_after_each_step(first_order):
    params, task = make_params(2), make_task(3)
    w = jnp.array([0.2, 0.3, 0.5])
    pp = lambda p: fewjax.mamlpp_loss(loss_fn, p, task, inner_steps=3, inner_lr=0.3, step_weights=w,
                                      first_order=first_order)[0]
    summed = lambda p: sum(w[i] * fewjax.maml_loss(loss_fn, p, task, inner_steps=i + 1, inner_lr=0.3,
                                                   first_order=first_order)[0] for i in range(3))
    chex.assert_trees_all_close(value_and_grad(pp, params), value_and_grad(summed, params), rtol=1e-12, atol=1e-14)


def test_lslr_per_step_rates_match_a_python_loop_and_finite_differences():
    params, task = make_params(4), make_task(5)
    rates = jax.tree.map(lambda p: jnp.array([0.1, 0.4]) * (1 + 0.1 * p.ndim), params)

    def loop(p, rates):
        for i in range(2):
            g = jax.grad(lambda q: loss_fn(q, task.support)[0])(p)
            p = jax.tree.map(lambda q, a, gi: q - a[i] * gi, p, rates, g)
        return loss_fn(p, task.query)[0]

    pp = lambda p, r: fewjax.mamlpp_loss(loss_fn, p, task, inner_steps=2, inner_lr=r)[0]
    ours = jax.jit(jax.value_and_grad(pp, argnums=(0, 1)))(params, rates)
    chex.assert_trees_all_close(ours, jax.jit(jax.value_and_grad(loop, argnums=(0, 1)))(params, rates), rtol=1e-12)
    numeric = finite_difference_grad(lambda r: pp(params, r), rates)
    chex.assert_trees_all_close(ours[1][1], numeric, rtol=1e-6, atol=1e-8)
    init = fewjax.lslr_init(params, inner_steps=2, lr=0.3)
    assert jax.tree.structure(init) == jax.tree.structure(params) and init["w1"].shape == (2,)


def shifted_loss(params_and_shift, batch):
    """A loss with a per-step, non-adapted parameter: a shift of the hidden layer (like a batch-norm bias)."""
    params, shift = params_and_shift
    return loss_fn({**params, "b1": params["b1"] + shift["shift"]}, batch)


def test_step_params_are_used_at_their_step_and_meta_learned():
    params, task = make_params(7), make_task(8)
    step_params = {"shift": jnp.asarray(np.random.default_rng(9).normal(size=(3, 4)) * 0.3)}
    w = jnp.array([0.2, 0.3, 0.5])

    def loop(p, sp):
        total = 0.0
        for i in range(3):
            at_i = {"shift": sp["shift"][i]}
            g = jax.grad(lambda q: shifted_loss((q, at_i), task.support)[0])(p)
            p = jax.tree.map(lambda q, gi: q - 0.3 * gi, p, g)
            total = total + w[i] * shifted_loss((p, at_i), task.query)[0]
        return total

    pp = lambda p, sp: fewjax.mamlpp_loss(shifted_loss, p, task, inner_steps=3, inner_lr=0.3, step_weights=w,
                                          step_params=sp)[0]
    ours = jax.jit(jax.value_and_grad(pp, argnums=(0, 1)))(params, step_params)
    chex.assert_trees_all_close(ours, jax.jit(jax.value_and_grad(loop, argnums=(0, 1)))(params, step_params),
                                rtol=1e-12, atol=1e-14)
    numeric = finite_difference_grad(lambda sp: pp(params, sp), step_params)
    chex.assert_trees_all_close(ours[1][1], numeric, rtol=1e-6, atol=1e-8)
    assert float(jnp.abs(ours[1][1]["shift"]).min()) > 0  # every step's copy receives a gradient


def test_adapt_is_the_inner_loop_of_the_loss():
    params, task = make_params(10), make_task(11)
    rates = fewjax.lslr_init(params, inner_steps=2, lr=0.2)
    step_params = {"shift": jnp.asarray(np.random.default_rng(12).normal(size=(2, 4)) * 0.3)}
    phi = fewjax.mamlpp_adapt(shifted_loss, params, task.support, inner_steps=2, inner_lr=rates,
                              step_params=step_params)
    last = {"shift": step_params["shift"][-1]}
    _, metrics = fewjax.mamlpp_loss(shifted_loss, params, task, inner_steps=2, inner_lr=rates,
                                    step_params=step_params)
    np.testing.assert_allclose(shifted_loss((phi, last), task.query)[0], metrics["query_loss_after"], rtol=1e-12)
    plain = fewjax.mamlpp_adapt(loss_fn, params, task.support, inner_steps=2, inner_lr=0.2)
    chex.assert_trees_all_close(plain, fewjax.adapt(loss_fn, params, task.support, steps=2, lr=0.2), rtol=1e-12)


def test_step_weights_anneal_from_uniform_to_the_last_step_and_sum_to_one():
    n = 5
    for t in (0.0, 0.25, 0.5, 1.0, 3.0):
        w = np.asarray(fewjax.mamlpp_step_weights(t, inner_steps=n))
        np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(fewjax.mamlpp_step_weights(0.0, inner_steps=n), np.full(n, 0.2), rtol=1e-6)
    late = np.asarray(fewjax.mamlpp_step_weights(1.0, inner_steps=n))
    np.testing.assert_allclose(late[:-1], 0.03 / n, rtol=1e-6)
    np.testing.assert_allclose(late[-1], 1 - 4 * 0.03 / n, rtol=1e-6)
    traced = jax.jit(functools.partial(fewjax.mamlpp_step_weights, inner_steps=n))(0.5)
    np.testing.assert_allclose(traced, fewjax.mamlpp_step_weights(0.5, inner_steps=n), rtol=1e-6)


def test_over_tasks_and_remat_agree_with_a_loop():
    params = make_params(6)
    tasks = [make_task(20 + i) for i in range(2)]
    kernel = functools.partial(fewjax.mamlpp_loss, inner_steps=2, inner_lr=0.2, step_weights=jnp.array([0.4, 0.6]))
    one = jax.jit(jax.grad(lambda p, t: kernel(loss_fn, p, t)[0]))
    loop = jax.tree.map(lambda a, b: (a + b) / 2, *[one(params, t) for t in tasks])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)
    batched = fewjax.over_tasks(functools.partial(kernel, loss_fn, remat=True))
    vmapped = jax.jit(jax.grad(lambda p: batched(p, stacked)[0]))(params)
    chex.assert_trees_all_close(vmapped, loop, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad, message", [
    (dict(inner_steps=0), "inner_steps must be a Python int >= 1"),
    (dict(step_weights=jnp.ones(2)), r"step_weights must have shape \(3,\)"),
    (dict(inner_lr={"w1": 0.1}), "inner_lr must be a scalar or a pytree like params"),
    ("lslr of 4 steps", r"shape \(3,\) \(LSLR\)"),
    (dict(step_params={"shift": jnp.zeros((2, 4))}), "leading axis of inner_steps=3"),
])
def test_bad_options_are_clear_errors(bad, message):
    if bad == "lslr of 4 steps":
        bad = dict(inner_lr=fewjax.lslr_init(make_params(0), inner_steps=4, lr=0.1))
    with pytest.raises(ValueError, match=message):
        fewjax.mamlpp_loss(loss_fn, make_params(0), make_task(1), **{"inner_steps": 3, "inner_lr": 0.1, **bad})
