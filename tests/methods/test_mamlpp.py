"""MAML++ as a method: every switch off is MAML; derivative-order annealing switches at its epoch; the multi-step
loss follows the epochs; per-step batch-norm weights are per step, meta-learned and used by `adapt`."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax
from fewjax.experiment.config import base_config, validate
from fewjax.methods import build_method, mamlpp

OFF = {"mamlpp.multi_step_loss": False, "mamlpp.per_step_bn": False, "mamlpp.lslr": False,
       "mamlpp.first_order_epochs": 0}


def config(method="mamlpp", **overrides):
    c = base_config()
    c.method, c.model.hidden = method, 8
    c.ways = c.test_ways = 3
    c.inner_steps = c.eval_inner_steps = 2
    c.inner_lr, c.mamlpp.epoch_steps, c.mamlpp.msl_epochs = 0.3, 3, 2
    c.update_from_flattened_dict(overrides)
    validate(c)
    return c


def tasks(n=2, ways=3, seed=0):
    r = np.random.default_rng(seed)
    images = lambda k: jnp.asarray(r.normal(size=(n, k, 28, 28, 1)), jnp.float32)
    labels = lambda k: jnp.broadcast_to(jnp.arange(k) % ways, (n, k))
    return fewjax.Task(fewjax.Batch(images(ways), labels(ways)), fewjax.Batch(images(2 * ways), labels(2 * ways)))


def sinusoid(method="mamlpp", **overrides):
    """A regression config (the 40-40 MLP, no normalisation): the switches' logic without convolutions to compile."""
    return config(method, **{"dataset": "sinusoid", "model.name": "mlp", "ways": 1, "test_ways": 1, **OFF,
                             **overrides})


def regression_tasks(n=2, k=5, seed=0):
    r = np.random.default_rng(seed)
    x = jnp.asarray(r.uniform(-5, 5, size=(n, 2 * k, 1)), jnp.float32)
    y = jnp.sin(x + jnp.asarray(r.uniform(0, 3, size=(n, 1, 1)), jnp.float32))
    return fewjax.Task(fewjax.Batch(x[:, :k], y[:, :k]), fewjax.Batch(x[:, k:], y[:, k:]))


def gradients(c, steps, batch):
    """The meta-gradient (of the model's weights) and loss at each of `steps`, from one compiled step."""
    method = build_method(c)
    params = method.init(jax.random.key(0), batch.support.x[0])
    meta_grad = jax.jit(method.meta_grad)
    out = [meta_grad(params, batch, step) for step in steps]
    return [(grads.get("model", grads), metrics["loss"]) for grads, metrics in out]


def test_every_switch_off_is_maml():
    batch = regression_tasks()
    chex.assert_trees_all_close(gradients(sinusoid(), [0], batch), gradients(sinusoid("maml"), [0], batch),
                                rtol=1e-5, atol=1e-7)


def test_test_time_adaptation_takes_eval_inner_steps_as_maml_does():
    batch = regression_tasks(seed=2)
    results = {}
    for method in ("mamlpp", "maml"):
        c = sinusoid(method, eval_inner_steps=5)  # inner_steps 2 in training, 5 at test
        m = build_method(c)
        params = m.init(jax.random.key(0), batch.support.x[0])
        results[method] = m.evaluate(params, batch)["query_loss_after"]
    np.testing.assert_allclose(results["mamlpp"], results["maml"], rtol=1e-5, atol=1e-7)
    c = sinusoid(eval_inner_steps=2)
    m = build_method(c)
    two = m.evaluate(m.init(jax.random.key(0), batch.support.x[0]), batch)["query_loss_after"]
    assert not np.allclose(two, results["mamlpp"])


def test_derivative_order_annealing_is_first_order_until_its_epoch_then_second_order():
    batch, annealed = regression_tasks(seed=1), sinusoid(**{"mamlpp.first_order_epochs": 1})  # first order: 0-2
    [first], [second] = gradients(sinusoid("fomaml"), [0], batch), gradients(sinusoid("maml"), [0], batch)
    got = gradients(annealed, [0, 2, 3, 10], batch)
    for grads, expected in zip(got, (first, first, second, second)):
        chex.assert_trees_all_close(grads, expected, rtol=1e-5, atol=1e-7)
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)))


def test_multi_step_loss_weights_move_once_an_epoch_then_only_the_last_step_counts():
    c = config()  # 2 inner steps, epochs of 3 meta-steps, multi-step loss over 2 epochs
    weights = lambda step: np.asarray(mamlpp.step_weights(jnp.asarray(step), c))
    np.testing.assert_allclose(weights(0), [0.5, 0.5])
    np.testing.assert_allclose(weights(2), weights(0))
    np.testing.assert_allclose(weights(3), fewjax.mamlpp_step_weights(0.5, inner_steps=2), rtol=1e-6)
    np.testing.assert_allclose(weights(6), [0.0, 1.0])
    assert mamlpp.step_weights(0, config(**{"mamlpp.multi_step_loss": False})) is None


def test_per_step_batch_norm_weights_are_per_step_meta_learned_and_used_to_predict():
    c, batch = config(), tasks(seed=2)
    method = build_method(c)
    params = method.init(jax.random.key(0), batch.support.x[0])
    assert set(params) == {"model", "norm", "lr"} and not any("norm" in k for k in params["model"])
    assert params["norm"]["norm0"]["scale"].shape == (2, 8) and params["lr"]["conv0"]["kernel"].shape == (2,)
    grads, _ = jax.jit(method.meta_grad)(params, batch, 0)
    g = np.asarray(grads["norm"]["norm1"]["scale"])
    assert np.all(np.abs(g).sum(axis=1) > 0) and not np.allclose(g[0], g[1])  # each step's copy learns its own
    support = jax.tree.map(lambda a: a[0], batch.support)
    adapted = method.adapt(params, support)
    full = method.model.init(jax.random.key(0), support.x)["params"]
    assert jax.tree.structure(adapted) == jax.tree.structure(full)
    np.testing.assert_array_equal(adapted["norm2"]["bias"], params["norm"]["norm2"]["bias"][-1])
    scores = method.model.apply({"params": adapted}, batch.query.x[0])
    np.testing.assert_array_equal(method.predict(params, support, batch.query.x[0]), scores.argmax(-1))
    one = jax.tree.map(lambda a: a[:1], batch)
    np.testing.assert_allclose(method.evaluate(params, one)["query_loss_after"][0],
                               fewjax.classification_loss(lambda p, x: method.model.apply({"params": p}, x))(
                                   adapted, jax.tree.map(lambda a: a[0], batch.query))[0], rtol=1e-5)


def test_per_step_batch_norm_without_normalisation_is_a_clear_error():
    with pytest.raises(ValueError, match="per_step_bn=False"):
        build_method(config(**{"model.norm": "none"})).init(jax.random.key(0), tasks().support.x[0])


@pytest.mark.parametrize("key, value, message", [
    ("eval_inner_steps", 3, "set eval_inner_steps = inner_steps = 2"),
    ("mamlpp.epoch_steps", 0, "config.mamlpp.epoch_steps=0"),
    ("mamlpp.first_order_epochs", -1, "second order from the start"),
    ("inner_optimizer", "adam", "use sgd"),
    ("optim.min_lr", 1.0, "must lie in"),
])
def test_bad_keys_are_named(key, value, message):
    with pytest.raises(ValueError, match=message):
        config(**{key: value})
