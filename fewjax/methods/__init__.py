"""Methods: from a config to the functions a training step needs (`Method`), one file per algorithm.

Adding a method is one file with a `build(config) -> Method` and one line in a registry below: `METHODS` for image
and regression data (a `fewjax.models` backbone), `TEXT_METHODS` for text datasets (a pretrained encoder).
`build_method(config)` picks the builder; `resolve_platform(config)` fixes the backend-dependent "auto" settings
once, before the model and step are built (the trainer records the resolved values in the run's config).

Example:
    >>> from fewjax.experiment.config import base_config
    >>> c = base_config(); c.method, c.ways, c.model.hidden = "protonet", 5, 8
    >>> method = build_method(c)
    >>> method.name, method.embed is not None
    ('protonet', True)
"""
from __future__ import annotations

import copy

import jax

from fewjax.methods import (imaml, maml, mamlpp, metric, reptile, text_anil, text_distill, text_finetune, text_fomaml,
                            text_prompt, text_protonet, text_setfit)
from fewjax.methods.backbone import build_model
from fewjax.methods.method import PER_TASK_WEIGHTS, Method, task_chunk_size
from fewjax.text.datasets import TEXT_DATASETS

METHODS = {
    "maml": maml.build,
    "fomaml": maml.build,
    "metasgd": maml.build,
    "anil": maml.build,
    "mamlpp": mamlpp.build,
    "reptile": reptile.build,
    "imaml": imaml.build,
    "protonet": metric.build,
    "matching": metric.build,
}
"""Methods on image (and regression) data."""

TEXT_METHODS = {
    "protonet": text_protonet.build,
    "anil": text_anil.build,
    "fomaml": text_fomaml.build,
    "finetune": text_finetune.build,
    "distill": text_distill.build,
    "setfit": text_setfit.build,
    "prompt": text_prompt.build,
}
"""Methods on a pretrained text encoder (`config.dataset` a text dataset)."""

def build_method(config) -> Method:
    """The `Method` of `config.method` for `config.dataset` ("auto" settings resolved for this backend)."""
    config = resolve_platform(config)
    registry = TEXT_METHODS if config.dataset in TEXT_DATASETS else METHODS
    if config.method not in registry:
        kind = "text datasets" if registry is TEXT_METHODS else f"dataset {config.dataset!r}"
        raise ValueError(f"config.method={config.method!r}: {kind} support {tuple(registry)}.")
    return registry[config.method](config)


def resolve_platform(config, backend: str | None = None):
    """A copy of `config` with the backend-dependent "auto" settings made concrete (the one place they are made).

    `model.conv_grad`: "matmul" on the CPU (convolution weight gradients as matrix products, several times faster
    on XLA:CPU), "xla" elsewhere. `task_loop`: "scan" on the CPU for methods whose tasks get their own adapted
    weights (vmapped, their convolutions become grouped convolutions, which XLA:CPU runs several times slower),
    "vmap" otherwise. Settings that are not "auto" are kept.
    """
    if config.model.conv_grad != "auto" and config.task_loop != "auto":
        return config
    cpu = (backend or jax.default_backend()) == "cpu"
    resolved = copy.deepcopy(config)
    if resolved.model.conv_grad == "auto":
        resolved.model.conv_grad = "matmul" if cpu else "xla"
    if resolved.task_loop == "auto":
        resolved.task_loop = "scan" if cpu and config.method in PER_TASK_WEIGHTS else "vmap"
    return resolved


__all__ = ["METHODS", "Method", "PER_TASK_WEIGHTS", "TEXT_METHODS", "build_method", "build_model", "resolve_platform",
           "task_chunk_size"]
