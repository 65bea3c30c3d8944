"""Batch norm of a convolution of a few-channel input, from the input's statistics when nothing differentiates it.

conv4's first block turns each 28x28x1 Omniglot image into 28x28x64 activations. Normalising them with batch
statistics reads that tensor three more times (mean, variance, normalise): at evaluation, where there is no
backward pass to amortise it over, that is about a third of the whole forward pass (bench/README.md). For
`y = conv(x, w)` the statistics can come from the input instead: with `P` the `kh * kw * C` taps of every output
position (the im2col matrix) and `mu`, `S` their mean and covariance,

    mean(y[..., d]) = mu @ w[:, d]        var(y[..., d]) = w[:, d]^T S w[:, d]

and normalising folds into the convolution: `norm(conv(x, w)) = conv(x, w * k) + (bias - mean * k)` with
`k = scale / sqrt(var + epsilon)`, one pass whose ReLU and pooling XLA fuses after it. `S` is computed centred
(two passes over the small `P`), so no variance is a difference of large numbers.

Under differentiation the custom VJP's forward rule runs the plain layer (the convolution, then
`fewjax.models.norm.batch_stat_norm`) and its backward rule is that computation's VJP: gradients of every order are
the unfolded layer's own, so training is untouched. As with any custom VJP, forward-mode differentiation
(`jax.jvp`, `jax.jacfwd`) is not available: a model that needs it keeps `Conv4(fold_norm=False)`, the default.
`tests/models/test_folded_norm.py` checks values in float64.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.models.folded_norm import conv_batch_norm
    >>> x = jax.random.uniform(jax.random.key(0), (8, 6, 6, 1))
    >>> w = jax.random.normal(jax.random.key(1), (3, 3, 1, 4))
    >>> conv_batch_norm(x, w, jnp.ones(4), jnp.zeros(4), ((1, 1), (1, 1))).shape
    (8, 6, 6, 4)
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from fewjax.models.conv import Padding, conv2d, pad_hw, single_channel_conv
from fewjax.models.norm import batch_stat_norm

MAX_FOLDED_CHANNELS = 3
"""Inputs with at most this many channels (grey or RGB images) are folded: their tap covariance is at most
27 x 27. Deeper layers keep the plain computation (their im2col matrix costs as much as the convolution)."""


def plain_conv(x: jax.Array, w: jax.Array, padding: Padding, matmul_grad: bool) -> jax.Array:
    """The convolution as Conv4 runs it: `fewjax.models.conv.conv2d` (matrix-product weight gradient), or XLA's."""
    if matmul_grad:
        return conv2d(x, w, padding)
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def conv_batch_norm(x: jax.Array, w: jax.Array, scale: jax.Array, bias: jax.Array, padding: Padding,
                    epsilon: float = 1e-5, matmul_grad: bool = True) -> jax.Array:
    """`batch_stat_norm(conv(x, w), scale, bias)` for `x: [N, H, W, C]` (C <= 3), `w: [kh, kw, C, D]`, stride 1."""
    kh, kw, c, d = w.shape
    stats_dtype = jnp.promote_types(x.dtype, jnp.float32)  # as batch_stat_norm: never below float32
    xp = pad_hw(x, padding).astype(stats_dtype)
    ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    taps = jnp.stack([xp[:, i: i + ho, j: j + wo] for i in range(kh) for j in range(kw)], axis=-2)
    taps = taps.reshape(-1, kh * kw * c)  # [N * Ho * Wo, kh * kw * C], rows in w's (i, j, c) order
    mu = jnp.mean(taps, axis=0)
    centred = taps - mu
    cov = centred.T @ centred / taps.shape[0]
    w_flat = w.reshape(kh * kw * c, d).astype(stats_dtype)
    mean = mu @ w_flat
    var = jnp.einsum("td,ts,sd->d", w_flat, cov, w_flat)
    k = scale / jnp.sqrt(var + epsilon)
    folded = (w * k).astype(x.dtype)
    y = single_channel_conv(x, folded, padding) if c == 1 else plain_conv(x, folded, padding, matmul_grad)
    return (y + (bias - mean * k)).astype(x.dtype)


def _plain(x, w, scale, bias, padding, epsilon, matmul_grad):
    return batch_stat_norm(plain_conv(x, w, padding, matmul_grad), scale, bias, epsilon)


def _fwd(x, w, scale, bias, padding, epsilon, matmul_grad):
    return jax.vjp(functools.partial(_plain, padding=padding, epsilon=epsilon, matmul_grad=matmul_grad),
                   x, w, scale, bias)


def _bwd(padding, epsilon, matmul_grad, vjp, g):
    return vjp(g)


conv_batch_norm.defvjp(_fwd, _bwd)
