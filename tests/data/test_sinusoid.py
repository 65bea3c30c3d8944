import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.data import sinusoid


def test_host_shapes_ranges_and_determinism():
    s = sinusoid(shots=5, queries=7, seed=0)
    task = s.sample(3, 1)
    assert task.support.x.shape == (5, 1) and task.query.y.shape == (7, 1)
    assert task.support.x.dtype == np.float32
    batch = s.sample_batch(3, 4)
    jax.tree.map(lambda b, t: np.testing.assert_array_equal(b[1], t), batch, task)
    xs = np.concatenate([batch.support.x, batch.query.x], 1)
    ys = np.concatenate([batch.support.y, batch.query.y], 1)
    assert np.all(np.abs(xs) <= 5) and np.all(np.abs(ys) <= 5)
    assert not np.array_equal(s.sample(4, 1).support.x, task.support.x)


def test_points_lie_on_one_sinusoid_in_range():
    task = sinusoid(shots=10, queries=10, seed=1).sample(0)
    x = np.concatenate([task.support.x, task.query.x])[:, 0].astype(np.float64)
    y = np.concatenate([task.support.y, task.query.y])[:, 0].astype(np.float64)
    # y = a sin x cos p - a cos x sin p: linear in (sin x, cos x)
    coef, *_ = np.linalg.lstsq(np.stack([np.sin(x), np.cos(x)], 1), y, rcond=None)
    np.testing.assert_allclose(np.stack([np.sin(x), np.cos(x)], 1) @ coef, y, atol=1e-4)
    amplitude, phase = np.hypot(*coef), np.arctan2(-coef[1], coef[0])
    assert 0.1 <= amplitude <= 5 and 0 <= phase <= np.pi


def test_device_path_jit_and_slices():
    s = sinusoid(shots=5, queries=5, seed=0)
    state = s.device_state()
    full = jax.jit(s.device_sample)(state, 2, jnp.arange(4))
    part = jax.jit(s.device_sample)(state, 2, jnp.array([2, 3]))
    jax.tree.map(lambda f, p: np.testing.assert_array_equal(f[2:], p), full, part)
    assert full.support.x.shape == (4, 5, 1) and full.query.y.dtype == jnp.float32
    assert not np.array_equal(full.support.y[0], full.support.y[1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="shots must be"):
        sinusoid(shots=0, queries=5, seed=0)


def test_evaluation_batches_from_a_start_are_the_tail_of_the_whole_set():
    s = sinusoid(shots=5, queries=5, seed=0)
    whole = jax.tree.map(lambda *a: np.concatenate(a), *s.eval_batches(7, seed=3, batch_size=3))
    tail = jax.tree.map(lambda *a: np.concatenate(a), *s.eval_batches(7, seed=3, batch_size=2, start=4))
    jax.tree.map(lambda w, t: np.testing.assert_array_equal(w[4:], t), whole, tail)
