"""The network an image (or regression) method trains: conv4, ResNet-12 or the sinusoid MLP."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fewjax.models import MLP, Conv4, ResNet12
from fewjax.models.resnet12 import scaled_widths

def build_model(config, *, classes: int | None) -> nn.Module:
    """The Flax module of `config.model`: a classifier with `classes` outputs, or an embedding network (None)."""
    dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
    if config.model.name == "mlp":
        return MLP(features=(40, 40), out=1)
    if config.model.name == "resnet12":  # model.hidden: the first block's width (64 -> 64-160-320-640)
        return ResNet12(num_classes=classes, widths=scaled_widths(config.model.hidden), norm=config.model.norm,
                        dtype=dtype, conv_grad=config.model.conv_grad)
    if config.model.name != "conv4":
        raise ValueError(f"config.model.name={config.model.name!r}: choose conv4, resnet12 or mlp")
    return Conv4(num_classes=classes, hidden=config.model.hidden, norm=config.model.norm, pool=config.model.pool,
                 dtype=dtype, conv_grad=config.model.conv_grad, fold_norm=classes is None)
