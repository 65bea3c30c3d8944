import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fewjax
from tests.kernels.conftest import finite_difference_grad, loss_fn, make_params, make_task

pytestmark = pytest.mark.usefixtures("x64")


def meta_value(params, task, **kw):
    return fewjax.maml_loss(loss_fn, params, task, **kw)[0]


def test_second_order_meta_gradient_matches_finite_differences():
    params, task = make_params(0), make_task(1)
    kw = dict(inner_steps=2, inner_lr=0.3)
    grad = jax.grad(meta_value)(params, task, **kw)
    numeric = finite_difference_grad(lambda p: meta_value(p, task, **kw), params)
    chex.assert_trees_all_close(grad, numeric, rtol=1e-6, atol=1e-8)


def test_first_order_gradient_is_query_gradient_at_adapted_params():
    params, task = make_params(2), make_task(3)
    grad = jax.grad(meta_value)(params, task, inner_steps=3, inner_lr=0.2, first_order=True)
    adapted = fewjax.adapt(loss_fn, params, task.support, steps=3, lr=0.2)
    expected = jax.grad(lambda p: loss_fn(p, task.query)[0])(adapted)
    chex.assert_trees_all_close(grad, expected, rtol=1e-10, atol=1e-12)


def test_second_and_first_order_differ_when_hessian_matters():
    params, task = make_params(4), make_task(5)
    second = jax.grad(meta_value)(params, task, inner_steps=2, inner_lr=0.5)
    first = jax.grad(meta_value)(params, task, inner_steps=2, inner_lr=0.5, first_order=True)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(second), jax.tree.leaves(first)))
    assert diff > 1e-3


def test_remat_gives_identical_gradients():
    params, task = make_params(6), make_task(7)
    plain = jax.grad(meta_value)(params, task, inner_steps=4, inner_lr=0.3)
    remat = jax.grad(meta_value)(params, task, inner_steps=4, inner_lr=0.3, remat=True)
    chex.assert_trees_all_close(plain, remat, rtol=1e-12, atol=1e-14)


def test_pytree_lr_equal_to_scalar_gives_same_value_and_gradient():
    params, task = make_params(8), make_task(9)
    tree_lr = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
    v1, g1 = jax.value_and_grad(meta_value)(params, task, inner_steps=2, inner_lr=0.3)
    v2, g2 = jax.value_and_grad(meta_value)(params, task, inner_steps=2, inner_lr=tree_lr)
    chex.assert_trees_all_close((v1, g1), (v2, g2), rtol=1e-12)


def test_meta_sgd_learning_rate_gradient_matches_finite_differences():
    params, task = make_params(10), make_task(11)
    lr = jax.tree.map(lambda p: jnp.full_like(p, 0.2), params)
    f = lambda rates: meta_value(params, task, inner_steps=2, inner_lr=rates)
    chex.assert_trees_all_close(jax.grad(f)(lr), finite_difference_grad(f, lr), rtol=1e-6, atol=1e-8)


def test_optax_sgd_inner_optimizer_equals_plain_lr():
    params, task = make_params(12), make_task(13)
    g1 = jax.grad(meta_value)(params, task, inner_steps=3, inner_lr=0.1)
    g2 = jax.grad(meta_value)(params, task, inner_steps=3, inner_optimizer=optax.sgd(0.1))
    chex.assert_trees_all_close(g1, g2, rtol=1e-12)


def test_inner_optimizer_sees_named_parameter_groups():
    """optax.multi_transform labels the adapted params by path ("head" vs the rest), masked leaves excluded."""
    params, task = make_params(16), make_task(17)
    labels = lambda p: {k: jax.tree.map(lambda _: "head" if k == "head" else "body", v) for k, v in p.items()}  # noqa
    tx = optax.multi_transform({"head": optax.sgd(0.5), "body": optax.sgd(0.05)}, labels)
    rates = {k: jax.tree.map(lambda _: 0.5 if k == "head" else 0.05, v) for k, v in params.items()}
    chex.assert_trees_all_close(fewjax.adapt(loss_fn, params, task.support, steps=2, optimizer=tx),
                                fewjax.adapt(loss_fn, params, task.support, steps=2, lr=rates), rtol=1e-12)
    mask = {k: jax.tree.map(lambda _: k != "b1", v) for k, v in params.items()}
    masked = fewjax.adapt(loss_fn, params, task.support, steps=2, optimizer=tx, mask=mask)
    chex.assert_trees_all_equal(masked["b1"], params["b1"])
    chex.assert_trees_all_close(masked, fewjax.adapt(loss_fn, params, task.support, steps=2, lr=rates, mask=mask),
                                rtol=1e-12)


def test_anil_mask_adapts_only_the_head_and_still_differentiates_the_body():
    params, task = make_params(14), make_task(15)
    mask = fewjax.models.head_mask(params)
    adapted = fewjax.adapt(loss_fn, params, task.support, steps=2, lr=0.5, mask=mask)
    chex.assert_trees_all_equal(adapted["w1"], params["w1"])
    assert not np.allclose(adapted["head"]["w"], params["head"]["w"])
    kw = dict(inner_steps=2, inner_lr=0.5, mask=mask)
    grad = jax.grad(meta_value)(params, task, **kw)
    numeric = finite_difference_grad(lambda p: meta_value(p, task, **kw), params)
    chex.assert_trees_all_close(grad, numeric, rtol=1e-6, atol=1e-8)


def test_metrics_report_losses_before_and_after_adaptation():
    params, task = make_params(16), make_task(17)
    task = fewjax.Task(task.support, task.support)  # query = support: adaptation must lower it
    loss, m = fewjax.maml_loss(loss_fn, params, task, inner_steps=5, inner_lr=0.5)
    for key in ("loss", "accuracy", "accuracy_before", "query_loss_before", "query_loss_after",
                "support_loss_before", "support_loss_after"):
        assert key in m, key
    assert m["query_loss_after"] < m["query_loss_before"]
    np.testing.assert_allclose(m["support_loss_before"], m["query_loss_before"], rtol=1e-12)
    np.testing.assert_allclose(m["support_loss_after"], loss, rtol=1e-12)


def test_zero_inner_steps_is_the_plain_query_loss():
    params, task = make_params(18), make_task(19)
    loss, _ = fewjax.maml_loss(loss_fn, params, task, inner_steps=0, inner_lr=0.5)
    np.testing.assert_allclose(loss, loss_fn(params, task.query)[0], rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=2), "missing inner learning rate"),
        (dict(steps=2, lr=0.1, optimizer=optax.sgd(0.1)), "not both"),
        (dict(steps=-1, lr=0.1), "non-negative"),
        (dict(steps=1, lr={"w1": 0.1}), "structure of params"),
        (dict(steps=1, lr=0.1, mask={"a": True}), "same tree structure"),
    ],
)
def test_adapt_rejects_bad_hyperparameters(kwargs, message):
    params, task = make_params(0), make_task(0)
    with pytest.raises(ValueError, match=message):
        fewjax.adapt(loss_fn, params, task.support, **kwargs)
