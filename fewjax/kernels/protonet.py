"""Prototypical networks (Snell, Swersky & Zemel 2017).

Each class's prototype is the mean embedding of its support examples; a query is classified by a softmax over
negative distances to the prototypes. Support and query go through `embed_fn` in one call (as in Snell et al.'s
code), so a model with batch statistics normalises over the whole episode.

Example:
    >>> import jax.numpy as jnp, fewjax
    >>> embed = lambda params, x: x * params
    >>> s = fewjax.Batch(x=jnp.array([[0.0, 0.0], [4.0, 0.0]]), y=jnp.array([0, 1]))
    >>> q = fewjax.Batch(x=jnp.array([[1.0, 0.0]]), y=jnp.array([0]))
    >>> loss, m = fewjax.protonet_loss(embed, 1.0, fewjax.Task(s, q), ways=2)
    >>> float(m["accuracy"])
    1.0
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from fewjax.kernels._episodic import at_least_f32, check_task, class_summary, masked_cross_entropy
from fewjax.types import EmbedFn, Params, Task

DISTANCES = ("sqeuclidean", "cosine")


def protonet_loss(
    embed_fn: EmbedFn,
    params: Params,
    task: Task,
    *,
    distance: str = "sqeuclidean",
    ways: int | None = None,
    temperature: float = 1.0,
):
    """Prototypical-network loss of one episode.

    Args:
      embed_fn: `embed_fn(params, x) -> embeddings [n, d]` (flattened by this function if more dims).
      params: the embedding network's params.
      task: a `fewjax.Task` whose labels are 0..ways-1.
      distance: "sqeuclidean" (Snell et al.) or "cosine".
      ways: number of classes; None uses one slot per support row and masks empty slots (same result).
      temperature: logits are `-distance / temperature` (or `cosine / temperature`).

    Returns:
      `(loss, {"loss", "accuracy"})`.
    """
    if distance not in DISTANCES:
        raise ValueError(f"protonet_loss: distance={distance!r}; choose one of {DISTANCES}.")
    slots = check_task(task, ways, "protonet_loss")
    n_s = task.support.x.shape[0]
    z = embed_fn(params, jnp.concatenate([task.support.x, task.query.x], axis=0))
    z = at_least_f32(z.reshape(z.shape[0], -1))
    z_s, z_q = z[:n_s], z[n_s:]
    onehot, counts = class_summary(task.support.y, slots, z.dtype)
    prototypes = (onehot.T @ z_s) / jnp.maximum(counts, 1.0)[:, None]
    if distance == "sqeuclidean":
        d = (
            jnp.sum(z_q**2, axis=-1, keepdims=True)
            - 2.0 * z_q @ prototypes.T
            + jnp.sum(prototypes**2, axis=-1)[None, :]
        )
        logits = -d / temperature
    else:
        logits = _normalize(z_q) @ _normalize(prototypes).T / temperature
    loss, accuracy = masked_cross_entropy(logits, task.query.y, counts > 0)
    return loss, {"loss": loss, "accuracy": accuracy}


def _normalize(v: jax.Array, eps: float = 1e-8) -> jax.Array:
    return v / jnp.sqrt(jnp.sum(v**2, axis=-1, keepdims=True) + eps)
