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


def test_minibatched_sgd_follows_the_hand_computed_path():
    # With the quadratic, step i moves w towards the mean c_i of its own mini-batch: w <- w - lr (w - c_i).
    ys = jnp.arange(12.0).reshape(6, 2) ** 1.5
    task = fewjax.Task(fewjax.Batch(jnp.zeros(4), ys[:4]), fewjax.Batch(jnp.zeros(2), ys[4:]))
    theta, lr, key = jnp.array([0.5, -0.5]), 0.3, jax.random.PRNGKey(3)
    grad, _ = fewjax.reptile_grad(quadratic, theta, task, inner_steps=5, inner_lr=lr, inner_batch_size=4, rng=key)

    batches = fewjax.inner_minibatches(fewjax.Batch(jnp.zeros(6), ys), batch_size=4, steps=5, rng=key)
    w = theta
    for i in range(5):
        w = w - lr * (w - jnp.mean(batches.y[i], axis=0))
    np.testing.assert_allclose(grad, theta - w, rtol=1e-12)
    full, _ = fewjax.reptile_grad(quadratic, theta, task, inner_steps=5, inner_lr=lr)
    assert not np.allclose(grad, full)  # the mini-batches change the path


def test_one_minibatch_of_everything_is_the_full_batch_step():
    ys = jnp.array([[1.0, 2.0], [3.0, 0.0], [5.0, -1.0]])
    task = fewjax.Task(fewjax.Batch(jnp.zeros(2), ys[:2]), fewjax.Batch(jnp.zeros(1), ys[2:]))
    theta = jnp.array([0.5, -0.5])
    mini, _ = fewjax.reptile_grad(quadratic, theta, task, inner_steps=1, inner_lr=0.2, inner_batch_size=3,
                                  rng=jax.random.PRNGKey(0))
    full, _ = fewjax.reptile_grad(quadratic, theta, task, inner_steps=1, inner_lr=0.2)
    np.testing.assert_allclose(mini, full, rtol=1e-12)


def test_minibatches_are_shuffled_epochs_without_replacement():
    # 4 examples, batches of 3 for 4 steps: 12 draws, three whole shuffles of the 4, batches straddling them.
    data = fewjax.Batch(x=jnp.arange(4), y=jnp.arange(4) * 10)
    mb = fewjax.inner_minibatches(data, batch_size=3, steps=4, rng=jax.random.PRNGKey(7))
    assert mb.x.shape == (4, 3)
    np.testing.assert_array_equal(mb.y, mb.x * 10)  # the leaves stay paired
    draws = np.asarray(mb.x).ravel()
    for epoch in draws.reshape(3, 4):
        assert sorted(epoch) == [0, 1, 2, 3]
    again = fewjax.inner_minibatches(data, batch_size=3, steps=4, rng=jax.random.PRNGKey(7))
    other = fewjax.inner_minibatches(data, batch_size=3, steps=4, rng=jax.random.PRNGKey(8))
    np.testing.assert_array_equal(again.x, mb.x)
    assert not np.array_equal(other.x, mb.x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(inner_batch_size=2), "needs rng"),
    (dict(inner_batch_size=3, rng=jax.random.PRNGKey(0)), "between 1 and the 2 examples"),
])
def test_minibatch_arguments_are_checked(kwargs, message):
    task = fewjax.Task(fewjax.Batch(jnp.zeros(1), jnp.ones((1, 2))), fewjax.Batch(jnp.zeros(1), jnp.ones((1, 2))))
    with pytest.raises(ValueError, match=message):
        fewjax.reptile_grad(quadratic, jnp.zeros(2), task, inner_steps=2, inner_lr=0.1, **kwargs)


def test_adapt_minibatches_need_one_batch_per_step():
    batch = fewjax.Batch(jnp.zeros((3, 2)), jnp.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="leading axis of length steps=2"):
        fewjax.adapt(quadratic, jnp.zeros(2), batch, steps=2, lr=0.1, minibatches=True)


def test_carried_inner_adam_state_gives_the_hand_computed_step():
    # Adam with beta1 = 0, one step from a carried state (count c, second moment nu0):
    # nu = b2 nu0 + (1 - b2) g^2, update = -lr g / (sqrt(nu / (1 - b2^(c+1))) + eps).
    ys = jnp.array([[1.0, 2.0], [3.0, 0.0]])
    task = fewjax.Task(fewjax.Batch(jnp.zeros(2), ys), fewjax.Batch(jnp.zeros(0), jnp.zeros((0, 2))))
    theta, lr, b2, eps = jnp.array([0.5, -0.5]), 1e-2, 0.999, 1e-8
    tx = optax.adam(lr, b1=0.0, b2=b2, eps=eps)
    nu0, count = jnp.array([4.0, 0.01]), 40
    state = optax.tree_utils.tree_set(tx.init(theta), nu=nu0, count=jnp.asarray(count, jnp.int32))
    grad, _, after = fewjax.reptile_grad(quadratic, theta, task, inner_steps=1, inner_optimizer=tx, inner_state=state)

    g = theta - jnp.mean(ys, axis=0)
    nu = b2 * nu0 + (1 - b2) * g ** 2
    phi = theta - lr * g / (jnp.sqrt(nu / (1 - b2 ** (count + 1))) + eps)
    np.testing.assert_allclose(grad, theta - phi, rtol=1e-10)
    np.testing.assert_allclose(optax.tree_utils.tree_get(after, "nu"), nu, rtol=1e-12)
    assert int(optax.tree_utils.tree_get(after, "count")) == count + 1
    fresh, _ = fewjax.reptile_grad(quadratic, theta, task, inner_steps=1, inner_optimizer=tx)
    np.testing.assert_allclose(fresh, lr * jnp.sign(g), rtol=1e-6)  # a fresh Adam's first step: lr * sign(g)


def test_adapt_starts_from_the_given_optimizer_state_and_returns_the_last():
    batch = fewjax.Batch(jnp.zeros(2), jnp.array([[1.0, 2.0], [3.0, 0.0]]))
    tx, theta = optax.adam(0.1, b1=0.0), jnp.array([0.5, -0.5])
    default, s1 = fewjax.adapt(quadratic, theta, batch, steps=2, optimizer=tx, return_state=True)
    given, s2 = fewjax.adapt(quadratic, theta, batch, steps=2, optimizer=tx, optimizer_state=tx.init(theta),
                             return_state=True)
    np.testing.assert_array_equal(default, given)
    # two steps, then one more from the returned state, equal three steps
    three = fewjax.adapt(quadratic, theta, batch, steps=3, optimizer=tx)
    np.testing.assert_allclose(fewjax.adapt(quadratic, default, batch, steps=1, optimizer=tx, optimizer_state=s1),
                               three, rtol=1e-12)
    with pytest.raises(ValueError, match="pass optimizer=<optax tx> too"):
        fewjax.adapt(quadratic, theta, batch, steps=1, lr=0.1, optimizer_state=s1)
