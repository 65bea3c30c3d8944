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
import numpy as np

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


def embed_all(embed_fn, params, ids, *, pad_id: int, batch_size: int = 256, multiple: int = 8):
    """`embed_fn(params, ids)` of every row of `ids` `[N, L]` as a numpy array `[N, d]`, in jitted batches of
    `batch_size` texts of similar length, each batch cut to its longest text (rounded up to `multiple` tokens, so
    at most `L / multiple` programs compile): padding is masked out of attention and pooling, so the result does
    not depend on it, and short texts (CLINC150's average 10 of 32 tokens) cost what they hold.

    Example:
        >>> embed = lambda params, x: jnp.stack([(x != 0).sum(-1), x.sum(-1)], -1).astype(jnp.float32)
        >>> embed_all(embed, None, np.array([[3, 0, 0], [1, 2, 0], [5, 6, 7]]), pad_id=0, multiple=2).tolist()
        [[1.0, 3.0], [2.0, 3.0], [3.0, 18.0]]
    """
    ids = np.asarray(ids)
    if ids.shape[0] == 0:
        raise ValueError("embed_all: no texts to embed.")
    lengths = (ids != pad_id).sum(-1)
    order = np.argsort(lengths, kind="stable")
    jitted = jax.jit(embed_fn)
    out = None
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        cut = min(ids.shape[1], max(multiple, -(-int(lengths[rows].max()) // multiple) * multiple))
        batch = ids[np.pad(rows, (0, batch_size - len(rows)), mode="edge"), :cut]  # one shape: one program
        z = np.asarray(jitted(params, batch))[:len(rows)]
        if out is None:
            out = np.empty((ids.shape[0], *z.shape[1:]), z.dtype)
        out[rows] = z
    return out
