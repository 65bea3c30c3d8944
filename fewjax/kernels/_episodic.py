"""Shared pieces of the metric-based kernels: shape checks and class masks (no algorithm lives here)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from fewjax.types import EmbedFn, Params, Task


def check_task(task: Task, ways: int | None, kernel: str) -> int:
    """Checks a classification task's static shapes; returns the number of class slots to use."""
    n_s, n_q = task.support.x.shape[0], task.query.x.shape[0]
    if task.support.y.shape[:1] != (n_s,) or task.query.y.shape[:1] != (n_q,):
        raise ValueError(
            f"{kernel}: labels and inputs disagree: support x has {n_s} rows and y shape {task.support.y.shape}, "
            f"query x has {n_q} rows and y shape {task.query.y.shape}; y must be int labels [rows]."
        )
    if ways is None:
        return n_s  # an upper bound on the classes present; empty slots are masked out
    if ways < 1 or n_s % ways:
        raise ValueError(
            f"{kernel}: ways={ways} does not divide the {n_s} support rows; "
            "the support set must hold ways * shots examples."
        )
    return ways


def class_summary(support_y: jax.Array, slots: int, dtype=jnp.float32):
    """One-hot labels [n_s, slots] and per-class counts [slots]."""
    onehot = jax.nn.one_hot(support_y, slots, dtype=dtype)
    return onehot, onehot.sum(axis=0)


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, present: jax.Array):
    """Cross-entropy and accuracy of `logits` [n, slots] with absent class slots excluded."""
    logits = jnp.where(present[None, :], logits, -jnp.inf)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, accuracy


def at_least_f32(x: jax.Array) -> jax.Array:
    """Upcasts half-precision outputs to float32 for the loss; float64 stays float64."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def embed_episode(embed_fn: EmbedFn, params: Params, task: Task):
    """Support and query embeddings `[n_s, d]`, `[n_q, d]` from one `embed_fn` call over both sets (a model with
    batch statistics normalises over the whole episode, as in Snell et al.'s code), flattened and at least f32."""
    n_s = task.support.x.shape[0]
    z = embed_fn(params, jnp.concatenate([task.support.x, task.query.x], axis=0))
    z = at_least_f32(z.reshape(z.shape[0], -1))
    return z[:n_s], z[n_s:]


def normalize(v: jax.Array, eps: float = 1e-8) -> jax.Array:
    """`v` scaled to unit L2 norm along the last axis."""
    return v / jnp.sqrt(jnp.sum(v**2, axis=-1, keepdims=True) + eps)


DISTANCES = ("sqeuclidean", "cosine")


def similarity_logits(z_query: jax.Array, z_keys: jax.Array, *, distance: str, temperature: float) -> jax.Array:
    """`[n_q, n_k]`: minus the squared Euclidean distance, or the cosine, of every query to every key, over
    `temperature` (ProtoNet's keys are the prototypes, matching networks' the support examples)."""
    check_distance(distance, "similarity_logits")
    if distance == "sqeuclidean":
        d = (
            jnp.sum(z_query**2, axis=-1, keepdims=True)
            - 2.0 * z_query @ z_keys.T
            + jnp.sum(z_keys**2, axis=-1)[None, :]
        )
        return -d / temperature
    return normalize(z_query) @ normalize(z_keys).T / temperature


def check_distance(distance: str, kernel: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"{kernel}: distance={distance!r}; choose one of {DISTANCES}.")
