"""Support-set filtering: drop near-duplicate support examples by embedding similarity.

A few-shot support set drawn from real data often holds near-copies ("what is my balance", "what's my balance"):
they count twice in a class mean while adding nothing. Walking the support set in order, an example is dropped
when its cosine similarity to an earlier *kept* example of the same class exceeds `threshold`; the first example
of every class is always kept, so no class loses its prototype. The result is a 0/1 weight per support row, so
shapes stay static under `jit` and `vmap`.

Example:
    >>> import jax.numpy as jnp, fewjax
    >>> z = jnp.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [1.0, 0.0]])
    >>> fewjax.near_duplicate_weights(z, jnp.array([0, 0, 0, 1]), threshold=0.95).tolist()
    [1.0, 0.0, 1.0, 1.0]
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from fewjax.kernels._episodic import normalize


def near_duplicate_weights(z_support: jax.Array, y_support: jax.Array, *, threshold: float) -> jax.Array:
    """Weights `[n]` (1 kept, 0 dropped) of support embeddings `[n, d]` with int labels `[n]`.

    `threshold` in (0, 1): a cosine similarity above it, to an earlier kept example of the same class, drops an
    example (0.99 drops copies and near-copies). Gradients do not flow through the choice (it is a hard selection).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"near_duplicate_weights: threshold={threshold}; pass a cosine similarity in (0, 1) above "
                         "which an example counts as a near-duplicate of an earlier one (e.g. 0.95).")
    z = jax.lax.stop_gradient(normalize(z_support))
    duplicate_of = (z @ z.T > threshold) & (y_support[:, None] == y_support[None, :])  # [i, j]: i near j

    def keep_next(kept, i):
        earlier = jnp.arange(z.shape[0]) < i
        keep = ~jnp.any(duplicate_of[i] & earlier & kept)
        return kept.at[i].set(keep), None

    kept, _ = jax.lax.scan(keep_next, jnp.zeros(z.shape[0], bool), jnp.arange(z.shape[0]))
    return kept.astype(z_support.dtype)
