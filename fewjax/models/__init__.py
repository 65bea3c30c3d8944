"""Pure-functional Flax modules: `params = model.init(...)["params"]`, `model.apply({"params": params}, x)`."""
from __future__ import annotations

from flax import traverse_util

from fewjax.models import bert

from fewjax.models.conv4 import Conv4
from fewjax.models.mlp import MLP
from fewjax.models.resnet12 import ResNet12
from fewjax.models.bert import BertConfig, BertEncoder, make_embed_fn, pool
from fewjax.models.pretrained import load_pretrained
from fewjax.models.norm import BatchStatNorm


def head_mask(params, head: str = "head"):
    """A pytree of bools like `params`, True under the top-level `head` entry: ANIL's `mask` for `fewjax.adapt`."""
    if head not in params:
        raise ValueError(f"head_mask: params have no top-level {head!r}; their keys are {sorted(params)}.")
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: k[0] == head for k in flat})


def norm_mask(params):
    """A pytree of bools like `params`, True for the parameters of normalisation layers (modules named `norm*`,
    `*_norm`): MAML++'s per-step batch-norm weights."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: any(n.startswith("norm") or n.endswith("_norm") for n in k[:-1])
                                         for k in flat})


def apply_fn(model):
    """`model.apply` as `f(params, x)`: the shape kernels and losses take."""
    return lambda params, x: model.apply({"params": params}, x)


__all__ = [
    "BatchStatNorm", "BertConfig", "BertEncoder", "Conv4", "MLP", "ResNet12", "apply_fn", "bert", "head_mask",
    "load_pretrained", "make_embed_fn", "norm_mask", "pool",
]
