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

import jax.numpy as jnp

from fewjax.kernels._episodic import (check_distance, check_task, class_summary, embed_episode, masked_cross_entropy,
                                     similarity_logits)
from fewjax.kernels.support_filter import near_duplicate_weights
from fewjax.types import EmbedFn, Params, Task


def protonet_loss(
    embed_fn: EmbedFn,
    params: Params,
    task: Task,
    *,
    distance: str = "sqeuclidean",
    ways: int | None = None,
    temperature: float = 1.0,
    near_duplicate_threshold: float | None = None,
):
    """Prototypical-network loss of one episode.

    Args:
      embed_fn: `embed_fn(params, x) -> embeddings [n, d]` (flattened by this function if more dims).
      params: the embedding network's params.
      task: a `fewjax.Task` whose labels are 0..ways-1.
      distance: "sqeuclidean" (Snell et al.) or "cosine".
      ways: number of classes; None uses one slot per support row and masks empty slots (same result).
      temperature: logits are `-distance / temperature` (or `cosine / temperature`).
      near_duplicate_threshold: if given, support examples whose embedding is this cosine-similar to an earlier
        kept one of their class leave the class mean (`fewjax.near_duplicate_weights`).

    Returns:
      `(loss, {"loss", "accuracy"})`.
    """
    check_distance(distance, "protonet_loss")
    slots = check_task(task, ways, "protonet_loss")
    z_s, z_q = embed_episode(embed_fn, params, task)
    logits, present = prototype_logits(z_s, task.support.y, z_q, slots=slots, distance=distance,
                                       temperature=temperature, near_duplicate_threshold=near_duplicate_threshold)
    loss, accuracy = masked_cross_entropy(logits, task.query.y, present)
    return loss, {"loss": loss, "accuracy": accuracy}


def prototype_logits(z_support, y_support, z_query, *, slots: int, distance: str = "sqeuclidean",
                     temperature: float = 1.0, near_duplicate_threshold: float | None = None):
    """Logits `[n_q, slots]` of queries against class prototypes, and which class slots have support examples.

    The classifier `protonet_loss` trains; `fewjax.load(...).predict` uses it on new episodes.
    """
    onehot, counts = class_summary(y_support, slots, z_support.dtype)
    if near_duplicate_threshold is not None:
        onehot = onehot * near_duplicate_weights(z_support, y_support, threshold=near_duplicate_threshold)[:, None]
        counts = onehot.sum(axis=0)
    prototypes = (onehot.T @ z_support) / jnp.maximum(counts, 1.0)[:, None]
    return similarity_logits(z_query, prototypes, distance=distance, temperature=temperature), counts > 0
