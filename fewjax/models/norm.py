"""Normalisation layers with an explicit meta-learning policy.

`BatchStatNorm` normalises with the statistics of the batch it is given and keeps no running averages: the
policy of Finn et al.'s MAML code (batch norm in training mode in the inner and the outer loop, at meta-train and
meta-test time). Under `jax.vmap` over tasks each task has its own statistics, so nothing leaks between tasks;
within a task the query examples share statistics (transductive, as in the papers we reproduce).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMS = ("batch", "layer", "none")


class BatchStatNorm(nn.Module):
    """Batch norm over all axes but the last, from the current batch only; learnable scale and bias."""

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        return batch_stat_norm(x, scale, bias, self.epsilon)


def batch_stat_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float = 1e-5) -> jax.Array:
    """`x` normalised over all axes but the last with its own mean and (biased) variance, then scaled and shifted."""
    axes = tuple(range(x.ndim - 1))
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bfloat16 statistics in float32; float64 stays
    mean = jnp.mean(x32, axis=axes)
    var = jnp.mean(jnp.square(x32 - mean), axis=axes)
    y = (x32 - mean) * (scale / jnp.sqrt(var + epsilon)) + bias
    return y.astype(x.dtype)


def make_norm(kind: str, name: str) -> nn.Module | None:
    if kind == "batch":
        return BatchStatNorm(name=name)
    if kind == "layer":
        return nn.LayerNorm(name=name)
    if kind == "none":
        return None
    raise ValueError(f"norm={kind!r} is not a known normalisation; choose one of {NORMS}.")
