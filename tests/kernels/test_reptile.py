import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fewjax

pytestmark = pytest.mark.usefixtures("x64")


def quadratic(w, batch):
    return 0.5 * jnp.mean(jnp.sum((w - batch.y) ** 2, axis=-1)), {}


@pytest.mark.parametrize("steps, lr, use_query", [(1, 0.3, True), (4, 0.1, True), (3, 0.2, False)])
def test_sgd_reproduces_closed_form_update(steps, lr, use_query):
    # loss = 0.5 * mean_i |w - y_i|^2 has gradient w - c (c = mean of the inner data), so k SGD steps give
    # phi = c + (1 - lr)^k (theta - c), and the outer SGD step with rate e gives theta + e (phi - theta).
    support_y = jnp.array([[1.0, 2.0], [3.0, 0.0]])
    query_y = jnp.array([[5.0, -1.0]])
    task = fewjax.Task(fewjax.Batch(jnp.zeros(2), support_y), fewjax.Batch(jnp.zeros(1), query_y))
    theta = jnp.array([0.5, -0.5])
    c = jnp.mean(jnp.concatenate([support_y, query_y]) if use_query else support_y, axis=0)
    phi = c + (1 - lr) ** steps * (theta - c)

    grad, metrics = fewjax.reptile_grad(quadratic, theta, task, inner_steps=steps, inner_lr=lr, use_query=use_query)
    np.testing.assert_allclose(grad, theta - phi, rtol=1e-12)

    tx = optax.sgd(0.7)
    updates, _ = tx.update(grad, tx.init(theta))
    np.testing.assert_allclose(optax.apply_updates(theta, updates), theta + 0.7 * (phi - theta), rtol=1e-12)
    assert metrics["loss"] < metrics["inner_loss_before"]


def test_pseudo_gradient_carries_no_gradient():
    task = fewjax.Task(fewjax.Batch(jnp.zeros(1), jnp.ones((1, 2))), fewjax.Batch(jnp.zeros(1), jnp.ones((1, 2))))
    g = jax.grad(lambda t: jnp.sum(fewjax.reptile_grad(quadratic, t, task, inner_steps=2, inner_lr=0.1)[0]))(
        jnp.zeros(2)
    )
    np.testing.assert_array_equal(g, 0.0)


def test_rejects_zero_inner_steps():
    task = fewjax.Task(fewjax.Batch(jnp.zeros(1), jnp.ones((1, 2))), fewjax.Batch(jnp.zeros(1), jnp.ones((1, 2))))
    with pytest.raises(ValueError, match="inner_steps must be >= 1"):
        fewjax.reptile_grad(quadratic, jnp.zeros(2), task, inner_steps=0, inner_lr=0.1)
