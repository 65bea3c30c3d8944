"""Adaptive task sampling's estimator (fewjax.data.task_sampling) and the sampler's drawn classes."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.data import ArraySource, episodes
from fewjax.data.task_sampling import (adaptive_sampling, difficulty_log_weights, effective_classes, init_difficulty,
                                       update_difficulty)

NUM_CLASSES = 8


def source():
    """8 classes of 6 examples; an example's value is its class (decoded as round(x * 255))."""
    x = np.repeat(np.arange(NUM_CLASSES, dtype=np.uint8), 6)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    return ArraySource(x, np.repeat(np.arange(NUM_CLASSES), 6), [f"c{i}" for i in range(NUM_CLASSES)])


def test_before_any_observation_the_weights_are_uniform():
    p = jnp.exp(adaptive_sampling().log_weights(init_difficulty(5)))
    np.testing.assert_allclose(p, np.full(5, 0.2), rtol=1e-6)
    assert float(effective_classes(jnp.log(p))) == pytest.approx(5.0, rel=1e-5)


def test_weights_move_towards_the_classes_of_the_hard_tasks():
    sampling = adaptive_sampling(decay=0.5, temperature=1.0, floor=0.0)
    state = sampling.init(6)
    classes, losses = jnp.array([[0, 1], [2, 3]]), jnp.array([2.0, 0.5])  # classes 4, 5 never drawn
    state = sampling.update(state, classes, losses)
    np.testing.assert_allclose(state.loss, [2.0, 2.0, 0.5, 0.5, 0.0, 0.0])  # first observation taken as is
    np.testing.assert_array_equal(state.seen, [1, 1, 1, 1, 0, 0])
    p = np.exp(np.asarray(sampling.log_weights(state)))
    # unseen classes score as the mean of the seen ones (1.25): between the hard and the easy classes
    np.testing.assert_allclose(p / p[2], [np.e ** 1.5] * 2 + [1.0] * 2 + [np.e ** 0.75] * 2, rtol=1e-5)
    # a second step: class 0 easy now, class 2 hard; each drawn class moves half way (decay 0.5)
    state = sampling.update(state, jnp.array([[0, 4], [2, 0]]), jnp.array([0.0, 3.0]))
    np.testing.assert_allclose(state.loss, [1.75, 2.0, 1.75, 0.5, 0.0, 0.0])  # class 0 observed (0 + 3) / 2
    np.testing.assert_array_equal(state.seen, [2, 1, 2, 1, 1, 0])
    # class 4's first observation is 0.0: it stays at 0 but now counts as seen (the easiest class)
    p = np.exp(np.asarray(sampling.log_weights(state)))
    assert np.argmax(p) == 1 and np.argmin(p) == 4


def test_the_floor_keeps_a_share_of_every_draw_uniform():
    state = init_difficulty(4)._replace(loss=jnp.array([10.0, 0.0, 0.0, 0.0]), seen=jnp.ones(4, jnp.int32))
    p = np.exp(np.asarray(difficulty_log_weights(state, temperature=0.1, floor=0.2)))
    np.testing.assert_allclose(p, [0.8 + 0.05, 0.05, 0.05, 0.05], rtol=1e-5)
    uniform = np.exp(np.asarray(difficulty_log_weights(state, temperature=0.1, floor=1.0)))
    np.testing.assert_allclose(uniform, np.full(4, 0.25), rtol=1e-6)


def test_a_class_at_the_floor_is_still_drawn_and_hard_classes_more_often():
    sampler = episodes(source(), ways=2, shots=1, queries=1, seed=0)
    hard = jnp.zeros(NUM_CLASSES).at[:2].set(50.0)  # classes 0, 1 hard; the others at the floor
    state = init_difficulty(NUM_CLASSES)._replace(loss=hard, seen=jnp.ones(NUM_CLASSES, jnp.int32))
    log_w = difficulty_log_weights(state, temperature=1.0, floor=0.2)
    data = sampler.device_state()
    data = data._replace(log_weights=data.log_weights + log_w)
    _, classes = jax.jit(sampler.device_sample_with_classes, static_argnums=2)(data, 0, 400)
    counts = np.bincount(np.asarray(classes).ravel(), minlength=NUM_CLASSES)
    assert counts.min() > 0, counts  # every easy class still drawn (p = 0.2 / 8 each per slot)
    assert counts[:2].min() > 3 * counts[2:].max(), counts


def test_sampled_classes_are_the_classes_of_the_tasks_and_the_tasks_do_not_change():
    sampler = episodes(source(), ways=3, shots=2, queries=1, seed=3)
    state = sampler.device_state()
    tasks, classes = sampler.device_sample_with_classes(state, 5, jnp.arange(4))
    plain = sampler.device_sample(state, 5, jnp.arange(4))
    for a, b in zip(jax.tree.leaves(tasks), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert classes.shape == (4, 3) and classes.dtype == jnp.int32
    value = np.rint(np.asarray(tasks.support.x)[:, :, 0, 0, 0] * 255).astype(int)  # [4, ways * shots]
    labels = np.asarray(tasks.support.y)
    np.testing.assert_array_equal(value, np.take_along_axis(np.asarray(classes), labels, axis=1))


def test_observations_summed_over_devices_equal_one_device():
    classes = jnp.array([[0, 1], [1, 2], [3, 0], [2, 1]])
    losses = jnp.array([1.0, 2.0, 3.0, 4.0])
    state = adaptive_sampling().init(5)
    whole = update_difficulty(state, classes, losses, decay=0.9)
    split = jax.vmap(functools.partial(update_difficulty, state, decay=0.9, axis_name="d"), axis_name="d")(
        classes.reshape(2, 2, 2), losses.reshape(2, 2))
    for device in range(2):
        np.testing.assert_allclose(split.loss[device], whole.loss, rtol=1e-6)
        np.testing.assert_array_equal(split.seen[device], whole.seen)
    np.testing.assert_allclose(whole.loss, [2.0, 7.0 / 3.0, 3.0, 3.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [({"decay": 1.0}, "decay"), ({"temperature": 0.0}, "temperature"),
                                             ({"floor": 1.5}, "floor")])
def test_bad_hyperparameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        adaptive_sampling(**kwargs)
