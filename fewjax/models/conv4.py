"""The standard 4-block convolutional network of few-shot learning (Vinyals et al. 2016; Finn et al. 2017).

Each block: 3x3 convolution with `hidden` filters, normalisation, ReLU, 2x2 max-pooling (or a stride-2
convolution, `pool="stride"`, as Finn et al. used on Omniglot). With `num_classes=None` the network is an
embedding (ProtoNet, matching networks: 28x28 Omniglot -> 64 features); with `num_classes` a linear head named
`head` follows (MAML; ANIL adapts `head` only, see `fewjax.models.head_mask`).

Batch norm uses the statistics of the current batch and keeps no running averages (see `fewjax.models.norm`).
A convolution followed by batch norm has no bias: batch norm subtracts each channel's mean, so such a bias would
never change an output nor receive a gradient (it would only cost a pass over the largest activations).

`conv_grad` picks how the convolutions are differentiated: "xla" (JAX's own rule: two more convolutions),
or "matmul" (the weight gradient as matrix products, `fewjax.models.conv`; several times faster on XLA:CPU). A run's
"auto" becomes "matmul" on the CPU and "xla" elsewhere (`fewjax.methods.resolve_platform`). Values and derivatives
are the same either way; so are the parameters.

`fold_norm=True` computes the first block's batch norm from the input image's statistics when nothing differentiates
it (`fewjax.models.folded_norm`): the same values (to float rounding), parameters and gradients, and a forward
pass about 25% faster on the CPU. Metric methods turn it on (their evaluation is a forward pass); MAML's
evaluation, which differentiates the support pass, measured 10% slower with it, so it stays off there.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.models import Conv4
    >>> model = Conv4(num_classes=5)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    >>> model.apply({"params": params}, jnp.zeros((10, 28, 28, 1))).shape
    (10, 5)
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fewjax.models.conv import conv_general_dilated, matmul_grad
from fewjax.models.folded_norm import MAX_FOLDED_CHANNELS, conv_batch_norm
from fewjax.models.norm import make_norm
from fewjax.models.pool import max_pool_2x2

POOLS = ("max", "stride")


class Conv4(nn.Module):
    num_classes: int | None = None
    hidden: int = 64
    blocks: int = 4
    norm: str = "batch"
    pool: str = "max"
    dtype: Any = jnp.float32
    conv_grad: str = "xla"
    fold_norm: bool = False

    @nn.compact
    def __call__(self, x):
        if self.pool not in POOLS:
            raise ValueError(f"Conv4: pool={self.pool!r}; choose one of {POOLS}.")
        conv_kw = {"conv_general_dilated": conv_general_dilated} if matmul_grad(self.conv_grad, "Conv4") else {}
        if x.ndim != 4:
            raise ValueError(f"Conv4 expects images [N, H, W, C]; got shape {x.shape}.")
        x = x.astype(self.dtype)
        for i in range(self.blocks):
            strides = (2, 2) if self.pool == "stride" else (1, 1)
            if self._folds(x):
                kernel = _ConvKernel(self.hidden, name=f"conv{i}")(x.shape[-1])
                scale, bias = _NormAffine(name=f"norm{i}")(self.hidden)
                x = conv_batch_norm(x, kernel, scale, bias, ((1, 1), (1, 1)), 1e-5, bool(conv_kw))
                x = nn.relu(x)
                x = max_pool_2x2(x)
                continue
            x = nn.Conv(self.hidden, (3, 3), strides=strides, padding="SAME", dtype=self.dtype, name=f"conv{i}",
                        use_bias=self.norm != "batch", **conv_kw)(x)
            norm = make_norm(self.norm, f"norm{i}")
            if norm is not None:
                x = norm(x)
            x = nn.relu(x)
            if self.pool == "max":
                x = max_pool_2x2(x)  # = nn.max_pool(x, (2, 2), strides=(2, 2)), faster gradient on CPU
        x = x.reshape(x.shape[0], -1)
        if self.num_classes is not None:
            x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)

    def _folds(self, x) -> bool:
        """Whether this block's batch norm is folded into its convolution (`fewjax.models.folded_norm`)."""
        return (self.fold_norm and self.norm == "batch" and self.pool == "max" and self.dtype == jnp.float32
                and x.shape[-1] <= MAX_FOLDED_CHANNELS)


class _ConvKernel(nn.Module):
    """The kernel `nn.Conv(features, (3, 3), use_bias=False)` would create (same name, initialiser and shape)."""

    features: int

    @nn.compact
    def __call__(self, in_features: int):
        return self.param("kernel", nn.initializers.lecun_normal(), (3, 3, in_features, self.features), jnp.float32)


class _NormAffine(nn.Module):
    """The scale and bias `fewjax.models.BatchStatNorm` would create."""

    @nn.compact
    def __call__(self, features: int):
        return (self.param("scale", nn.initializers.ones, (features,)),
                self.param("bias", nn.initializers.zeros, (features,)))
