"""2x2 max-pooling, stride 2 ("VALID": an odd trailing row or column is dropped), with an elementwise gradient.

Same values and derivatives as `flax.linen.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")`: the gradient
goes to the first maximum of each window in row-major order, as XLA's `select_and_scatter` gives it. That
operation, which JAX's pooling derivative lowers to, runs ~8x slower on XLA:CPU than the elementwise selects used
here and dominated conv4's backward pass (bench/README.md).

Example:
    >>> import jax.numpy as jnp
    >>> from fewjax.models.pool import max_pool_2x2
    >>> max_pool_2x2(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _corners(x: jax.Array) -> tuple[jax.Array, ...]:
    n, h, w, c = x.shape
    ho, wo = h // 2, w // 2
    win = x[:, : 2 * ho, : 2 * wo].reshape(n, ho, 2, wo, 2, c)
    return win[:, :, 0, :, 0], win[:, :, 0, :, 1], win[:, :, 1, :, 0], win[:, :, 1, :, 1]


@jax.custom_jvp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """`[N, H, W, C] -> [N, H // 2, W // 2, C]`."""
    a, b, c, d = _corners(x)
    return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


@max_pool_2x2.defjvp
def _max_pool_2x2_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    out = max_pool_2x2(x)
    a, b, c, _ = _corners(x)
    da, db, dc, dd = _corners(dx)
    take_a = a == out
    take_b = (b == out) & ~take_a
    take_c = (c == out) & ~(take_a | take_b)
    return out, jnp.where(take_a, da, jnp.where(take_b, db, jnp.where(take_c, dc, dd)))
