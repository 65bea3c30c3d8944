"""Non-transductive evaluation (Nichol et al. 2018): each query classified with the support set alone."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax
from fewjax.experiment.config import validate
from fewjax.methods import build_method
from fewjax.methods.maml import query_logits
from fewjax.models import apply_fn
from tests.conftest import sinusoid_config, tiny_config


def episode(seed=0, ways=3, shots=1, queries=2, size=28):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ways * (shots + queries), size, size, 1)).astype(np.float32)
    y = np.repeat(np.arange(ways), shots + queries).astype(np.int32)
    s = np.concatenate([np.arange(c * (shots + queries), c * (shots + queries) + shots) for c in range(ways)])
    q = np.setdiff1d(np.arange(len(y)), s)
    return fewjax.Task(fewjax.Batch(x[s], y[s]), fewjax.Batch(x[q], y[q]))


def test_each_query_sees_only_the_support_set_loop_against_vmap():
    method = build_method(tiny_config("unused", "maml"))
    task = episode()
    params = method.init(jax.random.key(0), task.support.x)
    apply = apply_fn(method.model)
    vmapped = query_logits(apply, params, task.support.x, task.query.x, transductive=False)
    for i, xq in enumerate(task.query.x):  # batch norm statistics from the support set and this query
        alone = apply(params, jnp.concatenate([task.support.x, xq[None]]))[-1]
        np.testing.assert_allclose(vmapped[i], alone, rtol=1e-5, atol=1e-6)
    transductive = query_logits(apply, params, task.support.x, task.query.x)
    assert not np.allclose(vmapped, transductive, atol=1e-3)  # batch norm makes the protocols differ


@pytest.mark.parametrize("method_name", ["maml", "reptile"])
def test_without_batch_norm_both_protocols_agree(method_name):
    tasks = jax.tree.map(lambda *a: np.stack(a), episode(0), episode(1))
    scores = []
    for transductive in (True, False):
        method = build_method(tiny_config("unused", method_name, transductive=transductive,
                                          **{"model.norm": "none"}))
        params = method.init(jax.random.key(0), tasks.support.x[0])
        scores.append(jax.jit(method.evaluate)(params, tasks))
        predicted = method.predict(params, jax.tree.map(lambda a: a[0], tasks.support), tasks.query.x[0])
        assert predicted.shape == (6,)
    np.testing.assert_allclose(scores[0]["accuracy"], scores[1]["accuracy"])
    np.testing.assert_allclose(scores[0]["loss"], scores[1]["loss"], rtol=1e-5)


def test_non_transductive_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="config.transductive=False: non-transductive evaluation is for"):
        validate(tiny_config("unused", "protonet", transductive=False))
    with pytest.raises(ValueError, match="config.transductive=False"):
        validate(sinusoid_config(transductive=False))
    text = tiny_config("unused", "anil", transductive=False)
    text.dataset = "clinc150"  # layer norm: each query is already classified alone, so the flag would claim nothing
    with pytest.raises(ValueError, match="text encoders normalise each example alone"):
        validate(text)
