"""SetFit kernels: the pair loss against a loop over pairs and finite differences; the logistic head against
scipy's L-BFGS on the same objective."""
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import fewjax
from tests.kernels.conftest import finite_difference_grad

pytestmark = pytest.mark.usefixtures("x64")


def linear_embed(params, x):
    return x @ params["w"]


def batch(seed, n=6, d=4, ways=3):
    r = np.random.default_rng(seed)
    return fewjax.Batch(jnp.asarray(r.normal(size=(n, d))), jnp.asarray(np.arange(n) % ways))


def params(seed, d=4, h=5):
    return {"w": jnp.asarray(np.random.default_rng(seed).normal(size=(d, h)))}


def loop_loss(p, b, balance):
    e = np.asarray(linear_embed(p, b.x))
    terms = {True: [], False: []}
    for i, j in itertools.combinations(range(len(e)), 2):
        cos = e[i] @ e[j] / np.linalg.norm(e[i]) / np.linalg.norm(e[j])
        same = bool(b.y[i] == b.y[j])
        terms[same].append((cos - same) ** 2)
    if balance:
        return np.mean(terms[True]) / 2 + np.mean(terms[False]) / 2 if terms[True] else np.mean(terms[False])
    return np.mean(terms[True] + terms[False])


@pytest.mark.parametrize("balance", [True, False])
def test_pair_loss_is_the_loop_over_pairs_and_its_gradient_the_finite_differences(balance):
    p, b = params(0), batch(1)
    loss, metrics = fewjax.setfit_loss(linear_embed, p, b, balance=balance)
    np.testing.assert_allclose(loss, loop_loss(p, b, balance), rtol=1e-12)
    assert (int(metrics["positive_pairs"]), int(metrics["negative_pairs"])) == (3, 12)
    f = lambda q: fewjax.setfit_loss(linear_embed, q, b, balance=balance)[0]
    chex.assert_trees_all_close(jax.grad(f)(p), finite_difference_grad(f, p), rtol=1e-6, atol=1e-9)
    chex.assert_trees_all_close(jax.jit(f)(p), f(p), rtol=1e-12)


def test_one_example_a_class_has_only_negative_pairs():
    p, b = params(2), batch(3, n=4, ways=4)
    loss, metrics = fewjax.setfit_loss(linear_embed, p, b)
    assert int(metrics["positive_pairs"]) == 0 and int(metrics["negative_pairs"]) == 6
    np.testing.assert_allclose(loss, loop_loss(p, b, balance=True), rtol=1e-12)


def test_pairs_need_two_examples():
    with pytest.raises(ValueError, match="n >= 2"):
        fewjax.setfit_loss(linear_embed, params(0), batch(0, n=1))


@pytest.mark.parametrize("l2", [0.1, 1.0])
def test_logistic_head_is_the_minimum_scipy_finds(l2):
    r = np.random.default_rng(4)
    x, y, classes = r.normal(size=(15, 6)), np.arange(15) % 3, 3

    def objective(flat):
        w, b = flat[:18].reshape(6, 3), flat[18:]
        logits = x @ w + b
        logits = logits - logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -logp[np.arange(15), y].sum() + 0.5 * l2 * (w ** 2).sum()

    ref = scipy.optimize.minimize(objective, np.zeros(21), method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    head = jax.jit(lambda a, b: fewjax.logistic_head(a, b, classes=classes, l2=l2, steps=200))(jnp.asarray(x),
                                                                                                 jnp.asarray(y))
    ours = np.concatenate([np.asarray(head["kernel"]).ravel(), np.asarray(head["bias"])])
    np.testing.assert_allclose(objective(ours), ref.fun, rtol=1e-9)
    np.testing.assert_allclose(ours, ref.x, atol=1e-4)


def test_logistic_head_needs_a_penalty():
    with pytest.raises(ValueError, match="l2 must be > 0"):
        fewjax.logistic_head(jnp.zeros((2, 3)), jnp.arange(2), classes=2, l2=0.0)
