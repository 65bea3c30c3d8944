"""A small fully connected network (sinusoid regression: two hidden layers of 40 units, Finn et al. 2017).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.models import MLP
    >>> model = MLP(features=(40, 40), out=1)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 1)))["params"]
    >>> model.apply({"params": params}, jnp.zeros((7, 1))).shape
    (7, 1)
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn


class MLP(nn.Module):
    features: Sequence[int] = (40, 40)
    out: int = 1

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.features):
            x = nn.relu(nn.Dense(width, name=f"dense{i}")(x))
        return nn.Dense(self.out, name="head")(x)
