"""ResNet-12, the few-shot backbone for real images (Oreshkin et al. 2018, TADAM; Lee et al. 2019, MetaOptNet).

Four residual blocks of `widths` channels (64-160-320-640 by default). Each block: three 3x3 convolutions, each
followed by normalisation, with leaky ReLU (slope 0.1) after the first two; a 1x1 convolution with normalisation
as the shortcut; the sum through a leaky ReLU; then 2x2 max-pooling. 84x84 images give 5x5x640 features, flattened
(MetaOptNet) or averaged over the image with `global_pool=True` (TADAM). With `num_classes` a linear head named
`head` follows (MAML; ANIL adapts `head` only, see `fewjax.models.head_mask`). MetaOptNet's DropBlock is left out.

Batch norm policy, explicit as in `Conv4`: `norm="batch"` normalises with the statistics of the batch it is given
and keeps no running averages (`fewjax.models.BatchStatNorm`): under `jax.vmap` over tasks each task has its own
statistics, nothing leaks between tasks, and within a task the query examples share statistics (transductive).
`norm="layer"` or `"none"` are the alternatives. Convolutions followed by batch norm have no bias (it cancels).
`conv_grad` as in `Conv4`: "matmul" differentiates the stride-1 convolutions with matrix products (CPU).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.models import ResNet12
    >>> model = ResNet12(widths=(4, 8, 8, 16), global_pool=True)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 84, 84, 3)))["params"]
    >>> model.apply({"params": params}, jnp.zeros((6, 84, 84, 3))).shape
    (6, 16)
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fewjax.models.conv import conv_general_dilated, matmul_grad
from fewjax.models.norm import make_norm
from fewjax.models.pool import max_pool_2x2

WIDTHS = (64, 160, 320, 640)


def scaled_widths(first: int) -> tuple[int, ...]:
    """ResNet-12's widths with the first block at `first` channels: 64 -> (64, 160, 320, 640), 8 -> (8, 20, 40, 80)."""
    return tuple(max(1, round(w * first / WIDTHS[0])) for w in WIDTHS)


class ResidualBlock(nn.Module):
    features: int
    norm: str = "batch"
    slope: float = 0.1
    dtype: Any = jnp.float32
    matmul_grad: bool = False  # stride-1 convolutions' weight gradient as matrix products (fewjax.models.conv)

    @nn.compact
    def __call__(self, x):
        kw = dict(use_bias=self.norm != "batch", dtype=self.dtype, padding="SAME")
        if self.matmul_grad:
            kw["conv_general_dilated"] = conv_general_dilated

        def normed(y, name):
            norm = make_norm(self.norm, name)
            return y if norm is None else norm(y)

        shortcut = normed(nn.Conv(self.features, (1, 1), name="shortcut", **kw)(x), "shortcut_norm")
        for i in range(3):
            x = normed(nn.Conv(self.features, (3, 3), name=f"conv{i}", **kw)(x), f"norm{i}")
            if i < 2:
                x = nn.leaky_relu(x, self.slope)
        x = nn.leaky_relu(x + shortcut, self.slope)
        return max_pool_2x2(x)


class ResNet12(nn.Module):
    num_classes: int | None = None
    widths: Sequence[int] = WIDTHS
    norm: str = "batch"
    global_pool: bool = False
    dtype: Any = jnp.float32
    conv_grad: str = "xla"

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"ResNet12 expects images [N, H, W, C]; got shape {x.shape}.")
        if len(self.widths) != 4:
            raise ValueError(f"ResNet12: widths must name four blocks' channels, got {tuple(self.widths)}.")
        matmul = matmul_grad(self.conv_grad, "ResNet12")
        x = x.astype(self.dtype)
        for i, features in enumerate(self.widths):
            x = ResidualBlock(features, norm=self.norm, dtype=self.dtype, matmul_grad=matmul, name=f"block{i}")(x)
        x = jnp.mean(x, axis=(1, 2)) if self.global_pool else x.reshape(x.shape[0], -1)
        if self.num_classes is not None:
            x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)
