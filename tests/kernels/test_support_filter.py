"""near_duplicate_weights by hand, and ProtoNet with it against ProtoNet on the filtered support set."""
import jax
import numpy as np
import pytest

import fewjax

pytestmark = pytest.mark.usefixtures("x64")

identity = lambda params, x: x * params


def test_by_hand_first_of_each_class_kept_and_other_classes_untouched():
    z = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [1.0, 0.0], [1.0, 0.05]])
    y = np.array([0, 0, 0, 1, 1])
    # row 1 is cos 0.995 to row 0; row 2 is orthogonal; row 3 is class 1's first; row 4 is near row 3
    np.testing.assert_array_equal(fewjax.near_duplicate_weights(z, y, threshold=0.95), [1, 0, 1, 1, 0])
    np.testing.assert_array_equal(fewjax.near_duplicate_weights(z, y, threshold=0.9999), [1, 1, 1, 1, 1])


def test_a_chain_is_judged_against_kept_examples_only():
    angle = np.deg2rad([0.0, 20.0, 40.0])  # neighbours 20 degrees apart (cos 0.94), ends 40 apart (cos 0.77)
    z = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    # row 1 is dropped as near row 0; row 2 is near only row 1, which was dropped, so it stays
    np.testing.assert_array_equal(fewjax.near_duplicate_weights(z, np.zeros(3, int), threshold=0.9), [1, 0, 1])


def test_jit_agrees_and_bad_threshold_is_one_clear_error():
    z, y = np.random.default_rng(0).normal(size=(12, 4)), np.repeat(np.arange(3), 4)
    eager = fewjax.near_duplicate_weights(z, y, threshold=0.3)
    jitted = jax.jit(lambda z, y: fewjax.near_duplicate_weights(z, y, threshold=0.3))(z, y)
    np.testing.assert_array_equal(eager, jitted)
    with pytest.raises(ValueError, match=r"threshold=1.5.*\(0, 1\)"):
        fewjax.near_duplicate_weights(z, y, threshold=1.5)


def test_protonet_with_filter_equals_protonet_on_the_filtered_support():
    support = fewjax.Batch(np.array([[2.0, 0.0], [2.0, 0.02], [0.0, 1.0], [0.0, 3.0], [1.0, 1.0], [0.0, 2.0]]),
                           np.array([0, 0, 0, 1, 1, 1]))
    query = fewjax.Batch(np.array([[1.0, 0.5], [0.2, 2.0], [1.5, 1.0]]), np.array([0, 1, 0]))
    keep = np.asarray(fewjax.near_duplicate_weights(support.x, support.y, threshold=0.95)) > 0
    np.testing.assert_array_equal(keep, [True, False, True, True, True, False])  # rows 1 and 5 are near-copies
    filtered = fewjax.Task(fewjax.Batch(support.x[keep], support.y[keep]), query)
    for distance in ("sqeuclidean", "cosine"):
        loss = lambda s, task, **kw: fewjax.protonet_loss(identity, s, task, distance=distance, **kw)[0]
        with_filter = lambda s: loss(s, fewjax.Task(support, query), ways=2, near_duplicate_threshold=0.95)
        np.testing.assert_allclose(with_filter(1.3), loss(1.3, filtered), rtol=1e-12)
        np.testing.assert_allclose(jax.grad(with_filter)(1.3), jax.grad(lambda s: loss(s, filtered))(1.3),
                                   rtol=1e-10)
        assert not np.isclose(with_filter(1.3), loss(1.3, fewjax.Task(support, query), ways=2))
