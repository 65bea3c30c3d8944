"""Siamese networks on pairs: the contrastive loss (Hadsell, Chopra & LeCun 2006) and the verification form
(Koch, Zemel & Salakhutdinov 2015).

Pairs come as `Batch(x, y)` with `x` of shape `[n, 2, ...]` (the two members on axis 1) and `y` 1 where the
two are of the same class, 0 otherwise. Both members go through `embed_fn` in one call.

- `form="contrastive"`: `0.5 * y * d^2 + 0.5 * (1 - y) * max(0, margin - d)^2` with `d` the Euclidean distance;
  a pair is predicted "same" when `d < margin / 2`.
- `form="verification"`: binary cross-entropy of `score_fn(params, |e1 - e2|) -> logits [n]` (Koch et al.: a
  learned weighted L1 distance and a sigmoid); predicted "same" when the logit is positive.

Example:
    >>> import jax.numpy as jnp, fewjax
    >>> pairs = fewjax.Batch(x=jnp.array([[[0.0], [0.0]], [[0.0], [3.0]]]), y=jnp.array([1, 0]))
    >>> loss, m = fewjax.contrastive_loss(lambda p, x: x, None, pairs, margin=2.0)
    >>> round(float(loss), 6), float(m["accuracy"])
    (0.0, 1.0)
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import optax

from fewjax.kernels._episodic import at_least_f32
from fewjax.types import Batch, EmbedFn, Params

FORMS = ("contrastive", "verification")


def contrastive_loss(
    embed_fn: EmbedFn,
    params: Params,
    pairs: Batch,
    *,
    form: str = "contrastive",
    margin: float = 1.0,
    score_fn: Callable | None = None,
    eps: float = 1e-12,
):
    """Siamese loss over a batch of pairs; returns `(loss, {"loss", "accuracy"})`."""
    if form not in FORMS:
        raise ValueError(f"contrastive_loss: form={form!r}; choose one of {FORMS}.")
    if form == "verification" and score_fn is None:
        raise ValueError("contrastive_loss: form='verification' needs score_fn(params, |e1 - e2|) -> logits [n].")
    x = pairs.x
    if x.ndim < 2 or x.shape[1] != 2 or pairs.y.shape != x.shape[:1]:
        raise ValueError(
            f"contrastive_loss: pairs.x must be [n, 2, ...] and pairs.y [n]; got {x.shape} and {pairs.y.shape}."
        )
    n = x.shape[0]
    z = embed_fn(params, jnp.concatenate([x[:, 0], x[:, 1]], axis=0))
    z = at_least_f32(z.reshape(2 * n, -1))
    diff = z[:n] - z[n:]
    same = pairs.y.astype(z.dtype)
    if form == "contrastive":
        d = jnp.sqrt(jnp.sum(diff**2, axis=-1) + eps)
        loss = jnp.mean(0.5 * same * d**2 + 0.5 * (1.0 - same) * jnp.maximum(margin - d, 0.0) ** 2)
        predicted = d < margin / 2
    else:
        logits = score_fn(params, jnp.abs(diff)).reshape(n)
        loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, same))
        predicted = logits > 0
    accuracy = jnp.mean(predicted == (same > 0.5))
    return loss, {"loss": loss, "accuracy": accuracy}
