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
