"""A convolution whose weight gradient is written as matrix products instead of a convolution.

`lax.conv_general_dilated` differentiates into two more convolutions. For the weight gradient (contracting over
the batch and the image) XLA:CPU picks a convolution whose "kernel" is the whole output gradient; when the
batch is small (a MAML support set) or the convolution sits in a loop it runs that on its generic emitter,
~50x slower than the forward pass on the same FLOPs (bench/README.md). Here the forward pass and the input
gradient stay XLA convolutions, and the weight gradient is written as what it is, for a `kh x kw` kernel:

    dw[i, j] = sum over (n, h, w) of  x_padded[n, h + i, w + j, :]^T  dy[n, h, w, :]

(`kh` matrix products, see `weight_grad`; with stride `s`, `x_padded[n, s*h + i, s*w + j, :]`). The input gradient
calls this same function with the flipped kernel (on the output gradient dilated by `s`: zeros between its rows and
columns, then stride 1), so second derivatives (MAML's meta-gradient) also take the fast paths. A one-channel input
(conv4's first layer on Omniglot) is convolved by `single_channel_conv`, `kh * kw` fused multiply-adds, instead of a
depth-1 library call. Values and derivatives of every order equal those of `lax.conv_general_dilated`;
`tests/models/test_conv.py` checks them in float64.

`conv_general_dilated` has `lax.conv_general_dilated`'s signature, so it plugs into Flax:

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from fewjax.models.conv import conv_general_dilated
    >>> layer = nn.Conv(8, (3, 3), conv_general_dilated=conv_general_dilated)
    >>> x = jnp.ones((2, 5, 5, 3))
    >>> params = layer.init(jax.random.key(0), x)
    >>> layer.apply(params, x).shape
    (2, 5, 5, 8)

Cases it does not cover (unequal strides, dilation, groups, other layouts) go to `lax.conv_general_dilated` unchanged.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]

CONV_GRADS = ("xla", "matmul")
"""How a model differentiates its convolutions: XLA's own rule, or matrix products (several times faster on
XLA:CPU). A run's "auto" is resolved to one of them once, by `fewjax.methods.resolve_platform`."""


def matmul_grad(conv_grad: str, model: str) -> bool:
    """Whether `model`'s convolutions take the matrix-product weight gradient; one clear error for a bad choice."""
    if conv_grad not in CONV_GRADS:
        raise ValueError(f"{model}: conv_grad={conv_grad!r}; choose one of {CONV_GRADS} (a run's 'auto' is resolved "
                         "for the backend by fewjax.methods.resolve_platform).")
    return conv_grad == "matmul"


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """`lax.conv_general_dilated`, with the matrix-product weight gradient for 2-D NHWC/HWIO convolutions of equal
    strides along height and width."""
    ones = (1, 1)
    plain = (
        lhs.ndim == 4
        and len(set(window_strides)) == 1
        and tuple(lhs_dilation or ones) == ones
        and tuple(rhs_dilation or ones) == ones
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and _is_nhwc_hwio(dimension_numbers, lhs.ndim)
    )
    if not plain:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type)
    strides = tuple(window_strides)
    pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding) if isinstance(padding, str) else padding
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    return conv2d(lhs, rhs, pads, precision, int(strides[0]))


def _is_nhwc_hwio(dimension_numbers, ndim: int) -> bool:
    if dimension_numbers is None:
        return False  # lax's default is NCHW/OIHW
    dn = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)
    return dn == lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x: jax.Array, w: jax.Array, padding: Padding, precision=None, stride: int = 1) -> jax.Array:
    """2-D convolution, `x: [N, H, W, C]`, `w: [kh, kw, C, D]`, `padding: ((top, bottom), (left, right))`, the same
    `stride` along height and width."""
    if x.shape[-1] == 1:
        return single_channel_conv(x, w, padding, stride)
    return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=precision)


def single_channel_conv(x: jax.Array, w: jax.Array, padding: Padding, stride: int = 1) -> jax.Array:
    """A one-channel input's convolution as `kh * kw` broadcast multiply-adds, which XLA fuses into one pass
    (a library convolution with one input channel runs a GEMM of depth 1: several times slower on XLA:CPU)."""
    kh, kw = w.shape[:2]
    xp = pad_hw(x, padding)
    ho, wo = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    return sum(_taps(xp, i, j, ho, wo, stride) * w[i, j, 0] for i in range(kh) for j in range(kw))


def _taps(xp: jax.Array, i: int, j: int, ho: int, wo: int, stride: int) -> jax.Array:
    """`xp[:, stride * h + i, stride * w + j]` for every output position `(h, w)`: `[N, ho, wo, C]`."""
    return xp[:, i: i + stride * (ho - 1) + 1: stride, j: j + stride * (wo - 1) + 1: stride]


def pad_hw(x: jax.Array, padding: Padding) -> jax.Array:
    """`x` zero-padded by `padding` (a negative side crops)."""
    (top, bottom), (left, right) = padding
    xp = jnp.pad(x, ((0, 0), (max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)), (0, 0)))
    return xp[:, max(-top, 0): xp.shape[1] - max(-bottom, 0), max(-left, 0): xp.shape[2] - max(-right, 0)]


def _conv2d_fwd(x, w, padding, precision, stride):
    return conv2d(x, w, padding, precision, stride), (x, w)


def _conv2d_bwd(padding, precision, stride, residuals, dy):
    x, w = residuals
    kh, kw = w.shape[:2]
    (top, _), (left, _) = padding
    # The input gradient is the stride-1 convolution of dy (dilated by the stride: zeros between its rows and
    # columns) with the flipped kernel, in/out channels swapped; the padding puts output row r at input row r.
    w_flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    if stride > 1:
        gaps = (0, 0, stride - 1)
        dy_dilated = lax.pad(dy, jnp.zeros((), dy.dtype), ((0, 0, 0), gaps, gaps, (0, 0, 0)))
    else:
        dy_dilated = dy
    lo_h, lo_w = kh - 1 - top, kw - 1 - left
    hi_h = x.shape[1] - dy_dilated.shape[1] - lo_h + kh - 1
    hi_w = x.shape[2] - dy_dilated.shape[2] - lo_w + kw - 1
    dx = conv2d(dy_dilated, w_flipped, ((lo_h, hi_h), (lo_w, hi_w)), precision)
    return dx, weight_grad(x, dy, (kh, kw), padding, precision, stride)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def weight_grad(x: jax.Array, dy: jax.Array, kernel: tuple[int, int], padding: Padding, precision=None,
                stride: int = 1) -> jax.Array:
    """`d(sum(conv2d(x, w, stride=stride) * dy)) / dw`, shape `[kh, kw, C, D]`, as `kh` matrix products over batch
    and image.

    The `kw` column shifts of the padded input are concatenated on the channel axis once (`[N, H', Wo, kw*C]`);
    each kernel row `i` is then one product `rows_i^T [kw*C, N*Ho*Wo] @ dy [N*Ho*Wo, D]`. On XLA:CPU this beats
    both one product per tap and XLA's own weight-gradient convolution (bench/README.md).
    """
    kh, kw = kernel
    xp = pad_hw(x, padding)
    n, ho, wo, d = dy.shape
    c = x.shape[-1]
    s = stride
    columns = jnp.concatenate([xp[:, :, j: j + s * (wo - 1) + 1: s] for j in range(kw)], axis=-1)  # [N, H', Wo, kw*C]
    dy_flat = dy.reshape(n * ho * wo, d)
    rows = [jnp.einsum("pk,pd->kd", columns[:, i: i + s * (ho - 1) + 1: s].reshape(n * ho * wo, kw * c), dy_flat,
                       precision=precision)
            for i in range(kh)]  # each [kw*C, D]
    return jnp.stack(rows).reshape(kh, kw, c, d).astype(x.dtype)
