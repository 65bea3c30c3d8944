import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax


def mlp_apply(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return h @ params["head"]["w"] + params["head"]["b"]


def make_params(rng, d_in=3, d_h=4, d_out=3, dtype=np.float64):
    r = np.random.default_rng(rng)
    return {
        "w1": jnp.asarray(r.normal(size=(d_in, d_h)), dtype),
        "b1": jnp.asarray(r.normal(size=(d_h,)) * 0.1, dtype),
        "head": {"w": jnp.asarray(r.normal(size=(d_h, d_out)), dtype), "b": jnp.zeros((d_out,), dtype)},
    }


def make_task(rng, n_s=6, n_q=9, d_in=3, ways=3, dtype=np.float64):
    r = np.random.default_rng(rng)
    s = fewjax.Batch(jnp.asarray(r.normal(size=(n_s, d_in)), dtype), jnp.asarray(np.arange(n_s) % ways))
    q = fewjax.Batch(jnp.asarray(r.normal(size=(n_q, d_in)), dtype), jnp.asarray(np.arange(n_q) % ways))
    return fewjax.Task(s, q)


loss_fn = fewjax.classification_loss(mlp_apply)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def finite_difference_grad(f, params, eps=1e-6):
    """Central differences of scalar f over every coordinate of a pytree (float64)."""
    f = jax.jit(f)
    leaves, treedef = jax.tree.flatten(params)
    grads = []
    for i, leaf in enumerate(leaves):
        g = np.zeros(leaf.shape)
        flat = np.asarray(leaf).ravel()
        for j in range(flat.size):
            def at(delta):
                bumped = flat.copy()
                bumped[j] += delta
                new = list(leaves)
                new[i] = jnp.asarray(bumped.reshape(leaf.shape))
                return float(f(treedef.unflatten(new)))
            g.ravel()[j] = (at(eps) - at(-eps)) / (2 * eps)
        grads.append(jnp.asarray(g))
    return treedef.unflatten(grads)
