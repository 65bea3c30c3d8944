"""Reptile as Nichol et al.'s code runs it: the carried inner optimizer state (`config.inner_state="carried"`) and
the test-time inner mini-batches (`config.eval_inner_batch_size`)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

import fewjax
from fewjax.experiment.state import outer_optimizer
from fewjax.methods import build_method
from fewjax.methods import reptile
from fewjax.methods.method import CARRIED
from tests.conftest import tiny_config
from tests.methods.test_transductive import episode

CARRIED_ADAM = dict(inner_optimizer="adam", inner_lr=1e-3, inner_state="carried", inner_steps=2)


def test_every_task_starts_from_the_carried_state_and_the_step_assigns_their_mean():
    config = tiny_config("unused", "reptile", **CARRIED_ADAM, **{"optim.name": "sgd", "optim.lr": 0.5})
    method = build_method(config)
    tasks = jax.tree.map(lambda *a: np.stack(a), episode(0), episode(1))
    params = method.init(jax.random.key(0), tasks.support.x[0])
    tx = optax.adam(1e-3, b1=0.0)
    start = optax.tree_utils.tree_set(tx.init(params["model"]), count=jnp.asarray(7, jnp.int32),
                                      nu=jax.tree.map(lambda w: jnp.full_like(w, 0.5), params["model"]))
    params = {**params, CARRIED: jax.tree.map(lambda a: a.astype(jnp.float32), start)}

    grads, _ = method.meta_grad(params, tasks, 0)
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 0), 2)
    per_task = [fewjax.reptile_grad(fewjax.classification_loss(fewjax.models.apply_fn(method.model)),
                                    params["model"], jax.tree.map(lambda a: a[i], tasks), inner_steps=2,
                                    inner_optimizer=tx, inner_state=start, rng=keys[i]) for i in range(2)]
    mean_after = jax.tree.map(lambda *s: np.mean([np.asarray(x, np.float32) for x in s], axis=0),
                              *[t[2] for t in per_task])
    mean_grad = jax.tree.map(lambda a, b: (a + b) / 2, per_task[0][0], per_task[1][0])
    for g, want in zip(jax.tree.leaves(grads["model"]), jax.tree.leaves(mean_grad)):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)

    outer = outer_optimizer(config)
    updates, _ = outer.update(grads, outer.init(params), params)
    new = optax.apply_updates(params, updates)
    for got, want in zip(jax.tree.leaves(new[CARRIED]), jax.tree.leaves(mean_after)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    assert float(optax.tree_utils.tree_get(new[CARRIED], "count")) == 9.0  # 7 + two inner steps
    for got, w, g in zip(jax.tree.leaves(new["model"]), jax.tree.leaves(params["model"]),
                         jax.tree.leaves(grads["model"])):  # the weights take the outer SGD step
        np.testing.assert_allclose(got, w - 0.5 * g, rtol=1e-6, atol=1e-7)


def test_test_episodes_adapt_from_the_carried_state():
    config = tiny_config("unused", "reptile", **CARRIED_ADAM)
    method = build_method(config)
    task = episode(0)
    params = method.init(jax.random.key(0), task.support.x)
    big_nu = {**params, CARRIED: optax.tree_utils.tree_set(
        params[CARRIED], nu=jax.tree.map(lambda w: jnp.full_like(w, 1e6), params["model"]), count=jnp.float32(100))}
    moved = lambda p: max(float(jnp.max(jnp.abs(a - w))) for a, w in  # noqa: E731
                          zip(jax.tree.leaves(method.adapt(p, task.support)), jax.tree.leaves(params["model"])))
    assert moved(big_nu) < 1e-3 * moved(params)  # a huge carried second moment all but freezes the inner steps


def test_test_time_minibatches_take_the_steps_on_the_drawn_batches():
    # Nichol et al.'s --eval-batch: each test-time inner step on a mini-batch of the support set.
    config = tiny_config("unused", "reptile", eval_inner_steps=2, inner_lr=0.1, test_shots=3,
                         eval_inner_batch_size=4, shots=3)
    method = build_method(config)
    task = episode(0, shots=3)  # 9 support examples
    params = method.init(jax.random.key(0), task.support.x)
    loss_fn = fewjax.classification_loss(fewjax.models.apply_fn(method.model))
    batches = fewjax.inner_minibatches(task.support, batch_size=4, steps=2,
                                       rng=jax.random.fold_in(jax.random.PRNGKey(config.seed), reptile.TEST_KEY))
    want = params
    for i in range(2):  # plain SGD steps, written out
        batch = jax.tree.map(lambda a: a[i], batches)
        want = jax.tree.map(lambda w, g: w - 0.1 * g, want, jax.grad(lambda p: loss_fn(p, batch)[0])(want))
    got = method.adapt(params, task.support)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    full = build_method(tiny_config("unused", "reptile", eval_inner_steps=2, inner_lr=0.1, test_shots=3, shots=3))
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(got), jax.tree.leaves(full.adapt(params, task.support)))) > 1e-4


def test_test_time_minibatches_of_the_whole_support_set_are_full_batch_steps():
    task = episode(0)
    methods = [build_method(tiny_config("unused", "reptile", **CARRIED_ADAM, eval_inner_batch_size=size))
               for size in (0, 3)]
    params = methods[0].init(jax.random.key(0), task.support.x)
    for a, b in zip(*(jax.tree.leaves(m.adapt(params, task.support)) for m in methods)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
