"""The pretrained text encoder of a run: loaded once per process, truncated and typed as the config says.

Every text method starts from `config.text.model` (a local folder or a Hugging Face Hub name, read by
`fewjax.models.pretrained.load_pretrained`). `pretrained(config)` returns `(module, params, tokenizer)` with
`text.num_layers`, `model.dtype` and `remat` applied.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from fewjax.models.pretrained import load_pretrained


@functools.lru_cache(maxsize=4)
def load_pretrained_cached(model: str):
    """`fewjax.models.pretrained.load_pretrained(model)`: `(module, params, tokenizer)`, read from disk once per process."""
    return load_pretrained(model)


def pretrained(config):
    """`(module, params, tokenizer)` of `config.text.model`, truncated to `text.num_layers`, with the config's
    dtype and remat. Loaded from disk once per process; params are shared (jax arrays are immutable)."""
    t = config.text
    if t.num_layers < 0:
        raise ValueError(f"config.text.num_layers={t.num_layers}: must be >= 0 (0 keeps every layer).")
    if t.pooling not in ("mean", "cls"):
        raise ValueError(f"config.text.pooling={t.pooling!r}: choose mean or cls.")
    module, params, tok = load_pretrained_cached(str(t.model))
    layers = module.config.num_hidden_layers
    if t.num_layers > layers:
        raise ValueError(f"config.text.num_layers={t.num_layers}: {t.model} has only {layers} layers; choose "
                         f"1..{layers} or 0 (all).")
    if t.num_layers:
        module, params = truncated(module, params, t.num_layers)
    dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
    return module.clone(dtype=dtype, remat=bool(config.remat)), params, tok


def fresh_copy(params):
    """A copy: the training step donates its state, and the cached pretrained weights must survive it."""
    return jax.tree.map(jnp.array, params)


def truncated(module, params, num_layers: int):
    """The encoder's first `num_layers` transformer layers: `(module, params)`."""
    cfg = dataclasses.replace(module.config, num_hidden_layers=num_layers)
    kept = {k: v for k, v in params.items() if not (k.startswith("layer_") and int(k[6:]) >= num_layers)}
    return module.clone(config=cfg), kept
