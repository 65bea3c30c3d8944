"""Prototypical, matching and Siamese losses against small cases computed by hand (numpy)."""
import jax
import numpy as np
import pytest

import fewjax

pytestmark = pytest.mark.usefixtures("x64")

identity = lambda params, x: x * params

SUPPORT = fewjax.Batch(np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 1.0]]), np.array([0, 0, 1, 1]))
QUERY = fewjax.Batch(np.array([[1.0, 1.0], [0.0, 2.5], [3.0, 0.0]]), np.array([0, 1, 1]))
TASK = fewjax.Task(SUPPORT, QUERY)


def log_softmax(a):
    a = a - a.max(axis=-1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=-1, keepdims=True))


def test_protonet_sqeuclidean_by_hand():
    protos = np.array([[1.0, 0.0], [0.0, 2.0]])
    d = ((QUERY.x[:, None, :] - protos[None]) ** 2).sum(-1)  # [[1, 2], [7.25, 0.25], [4, 13]]
    np.testing.assert_allclose(d, [[1, 2], [7.25, 0.25], [4, 13]])
    expected = -log_softmax(-d)[np.arange(3), QUERY.y].mean()
    loss, m = fewjax.protonet_loss(identity, 1.0, TASK, ways=2)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    np.testing.assert_allclose(m["accuracy"], 2 / 3)


def test_protonet_without_ways_masks_empty_slots_and_agrees():
    a = fewjax.protonet_loss(identity, 1.0, TASK, ways=2)
    b = fewjax.protonet_loss(identity, 1.0, TASK)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
    g = jax.grad(lambda s: fewjax.protonet_loss(identity, s, TASK)[0])(1.0)
    assert np.isfinite(g)


def test_protonet_cosine_with_temperature_by_hand():
    protos = np.array([[1.0, 0.0], [0.0, 2.0]])
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
    logits = unit(QUERY.x) @ unit(protos).T / 0.5
    expected = -log_softmax(logits)[np.arange(3), QUERY.y].mean()
    loss, _ = fewjax.protonet_loss(identity, 1.0, TASK, ways=2, distance="cosine", temperature=0.5)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_matching_by_hand():
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)
    sims = unit(QUERY.x) @ unit(SUPPORT.x).T  # the all-zero support row has cosine 0
    att = np.exp(sims) / np.exp(sims).sum(-1, keepdims=True)
    probs = att @ np.eye(2)[SUPPORT.y]
    expected = -np.log(probs[np.arange(3), QUERY.y] + 1e-8).mean()
    loss, m = fewjax.matching_loss(identity, 1.0, TASK, ways=2)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(m["accuracy"], np.mean(probs.argmax(-1) == QUERY.y))


def test_matching_sqeuclidean_attention_with_temperature_by_hand():
    d = ((QUERY.x[:, None, :] - SUPPORT.x[None]) ** 2).sum(-1)  # query 1: [2, 2, 5, 1]
    np.testing.assert_allclose(d[0], [2, 2, 5, 1])
    att = np.exp(log_softmax(-d / 0.5))
    probs = att @ np.eye(2)[SUPPORT.y]
    expected = -np.log(probs[np.arange(3), QUERY.y] + 1e-8).mean()
    loss, m = fewjax.matching_loss(identity, 1.0, TASK, ways=2, distance="sqeuclidean", temperature=0.5)
    np.testing.assert_allclose(loss, expected, rtol=1e-9)
    np.testing.assert_allclose(m["accuracy"], np.mean(probs.argmax(-1) == QUERY.y))
    g = jax.grad(lambda s: fewjax.matching_loss(identity, s, TASK, ways=2, distance="sqeuclidean")[0])(1.0)
    step = 1e-6
    numeric = (fewjax.matching_loss(identity, 1.0 + step, TASK, ways=2, distance="sqeuclidean")[0]
               - fewjax.matching_loss(identity, 1.0 - step, TASK, ways=2, distance="sqeuclidean")[0]) / (2 * step)
    np.testing.assert_allclose(g, numeric, rtol=1e-6)


@pytest.mark.parametrize("kernel", [fewjax.matching_loss, fewjax.protonet_loss])
def test_metric_kernels_name_an_unknown_distance(kernel):
    with pytest.raises(ValueError, match="distance='l2'; choose one of \\('sqeuclidean', 'cosine'\\)"):
        kernel(identity, 1.0, TASK, ways=2, distance="l2")


def test_contrastive_by_hand():
    x = np.array([[[0.0, 0.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 2.0]], [[0.0, 0.0], [0.3, 0.4]]])
    y = np.array([1, 0, 0])
    d = np.array([5.0, 1.0, 0.5])
    margin = 2.0
    expected = np.mean(0.5 * y * d**2 + 0.5 * (1 - y) * np.maximum(margin - d, 0) ** 2)
    loss, m = fewjax.contrastive_loss(identity, 1.0, fewjax.Batch(x, y), margin=margin)
    np.testing.assert_allclose(loss, expected, rtol=1e-9)
    np.testing.assert_allclose(m["accuracy"], 1 / 3)  # predicted "same" iff d < 1: only pair 3, which is wrong


def test_verification_form_by_hand():
    x = np.array([[[0.0, 0.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.5]]])
    y = np.array([0, 1])
    alpha, bias = np.array([-1.0, 0.5]), 1.0
    score = lambda params, absdiff: absdiff @ params + bias
    logits = np.abs(x[:, 0] - x[:, 1]) @ alpha + bias  # [-3+2+1, 0+0.25+1]
    p = 1 / (1 + np.exp(-logits))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    loss, m = fewjax.contrastive_loss(lambda a, v: v, alpha, fewjax.Batch(x, y), form="verification", score_fn=score)
    np.testing.assert_allclose(loss, expected, rtol=1e-9)


def test_distillation_by_hand_and_temperature_squared_scaling():
    s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
    t = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    labels = np.array([1, 2])
    T, alpha = 3.0, 0.7
    pt, ls = np.exp(log_softmax(t / T)), log_softmax(s / T)
    kl = (pt * (np.log(pt) - ls)).sum(-1).mean()
    ce = -log_softmax(s)[np.arange(2), labels].mean()
    loss, m = fewjax.distillation_loss(s, t, labels, temperature=T, alpha=alpha)
    np.testing.assert_allclose(loss, alpha * T**2 * kl + (1 - alpha) * ce, rtol=1e-12)
    # With T^2 the soft term's gradient keeps its scale as T grows: ~ (s - t) / n_classes for large T.
    g = jax.grad(lambda z: fewjax.distillation_loss(z, t, None, temperature=100.0, alpha=1.0)[0])(s)
    centred = lambda v: v - v.mean(-1, keepdims=True)
    np.testing.assert_allclose(g, (centred(s) - centred(t)) / 3 / 2, atol=2e-3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fewjax.protonet_loss(identity, 1.0, TASK, ways=3), "does not divide"),
        (lambda: fewjax.protonet_loss(identity, 1.0, TASK, distance="l1"), "distance"),
        (lambda: fewjax.protonet_loss(identity, 1.0, fewjax.Task(fewjax.Batch(SUPPORT.x, SUPPORT.y[:3]), QUERY)),
         "labels and inputs disagree"),
        (lambda: fewjax.contrastive_loss(identity, 1.0, fewjax.Batch(np.zeros((2, 3, 2)), np.zeros(2))), r"\[n, 2"),
        (lambda: fewjax.contrastive_loss(identity, 1.0, fewjax.Batch(np.zeros((2, 2, 2)), np.zeros(2)),
                                         form="verification"), "score_fn"),
        (lambda: fewjax.distillation_loss(np.zeros((2, 3)), np.zeros((2, 4)), None, temperature=1, alpha=1),
         "same shape"),
        (lambda: fewjax.distillation_loss(np.zeros((2, 3)), np.zeros((2, 3)), None, temperature=1, alpha=0.5),
         "alpha=1.0"),
    ],
)
def test_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
