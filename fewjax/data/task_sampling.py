"""Adaptive task sampling: classes are drawn in proportion to a running estimate of their difficulty.

`adaptive_sampling(decay=, temperature=, floor=)` returns three pure functions over a `ClassDifficulty` pytree
(optax style: the state travels with the caller, here in the trainer's `TrainState`, so checkpoints hold it and a
resumed run replays the same draws):

- `init(num_classes)`: every class unseen; its weights are uniform.
- `log_weights(state)`: `[C]` class log-weights for the next draw, to add to the sampler's
  `DeviceState.log_weights` (`fewjax.data.episodes`): `p = (1 - floor) * softmax(loss / temperature) + floor / C`,
  a class not yet observed scored as the mean of the observed ones. `floor` is the share of the draws kept uniform,
  so no class starves (each class has probability at least `floor / C`); `floor=1` is uniform sampling.
- `update(state, classes, losses, axis_name=None)`: after a step whose tasks drew `classes [B, ways]` (source class
  indices, `EpisodeSampler.device_sample_with_classes`) and had query losses `losses [B]`, every class drawn moves
  towards the mean loss of the tasks that drew it, `loss <- decay * loss + (1 - decay) * observed` (its first
  observation is taken as it is); classes not drawn keep their estimate. `axis_name`: inside `shard_map` / `pmap`,
  the axes to sum the observations over, so that every device holds the same estimate.

A task's loss is shared by its `ways` classes: a class is hard when the tasks it appears in are hard.

Example:
    >>> import jax, jax.numpy as jnp
    >>> sampling = adaptive_sampling(decay=0.5, temperature=1.0, floor=0.0)
    >>> state = sampling.init(4)
    >>> state = sampling.update(state, jnp.array([[0, 1], [2, 3]]), jnp.array([2.0, 0.5]))
    >>> p = jnp.exp(sampling.log_weights(state))
    >>> bool(p[0] > p[2]), round(float(p.sum()), 5)
    (True, 1.0)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class ClassDifficulty(NamedTuple):
    """The running estimate: `loss [C]` float32, the moving average of each class's task loss (0 until seen);
    `seen [C]` int32, how many steps drew the class."""

    loss: jax.Array
    seen: jax.Array


class AdaptiveSampling(NamedTuple):
    """What `adaptive_sampling` returns: `init(num_classes)`, `log_weights(state)`,
    `update(state, classes, losses, axis_name=None)` (see the module docstring)."""

    init: Callable[[int], ClassDifficulty]
    log_weights: Callable[[ClassDifficulty], jax.Array]
    update: Callable[..., ClassDifficulty]


def adaptive_sampling(*, decay: float = 0.9, temperature: float = 1.0, floor: float = 0.1) -> AdaptiveSampling:
    """Class weights that follow each class's moving-average task loss (see the module docstring).

    Args:
      decay: in [0, 1): weight of the old estimate when a class is observed again (0: the last observation only).
      temperature: > 0, in loss units: a class whose loss is `temperature` above another's is drawn e times as often
        (before the floor).
      floor: in [0, 1]: the share of every draw kept uniform over the classes (1: uniform sampling).
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay={decay!r} must lie in [0, 1).")
    if not temperature > 0.0:
        raise ValueError(f"temperature={temperature!r} must be > 0.")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor={floor!r} must lie in [0, 1].")

    def log_weights(state: ClassDifficulty) -> jax.Array:
        return difficulty_log_weights(state, temperature=temperature, floor=floor)

    def update(state: ClassDifficulty, classes: jax.Array, losses: jax.Array, axis_name=None) -> ClassDifficulty:
        return update_difficulty(state, classes, losses, decay=decay, axis_name=axis_name)

    return AdaptiveSampling(init_difficulty, log_weights, update)


def init_difficulty(num_classes: int) -> ClassDifficulty:
    """The estimate before any observation: every class unseen (uniform weights)."""
    return ClassDifficulty(jnp.zeros((int(num_classes),), jnp.float32), jnp.zeros((int(num_classes),), jnp.int32))


def difficulty_log_weights(state: ClassDifficulty, *, temperature: float, floor: float) -> jax.Array:
    """`[C]` log-probabilities `log((1 - floor) * softmax(score / temperature) + floor / C)`; the score of a class
    is its estimated loss, or the mean over the observed classes while it has not been observed (all uniform before
    any observation)."""
    seen = state.seen > 0
    mean = jnp.sum(jnp.where(seen, state.loss, 0.0)) / jnp.maximum(jnp.sum(seen), 1)
    score = jnp.where(seen, state.loss, mean) / temperature
    num_classes = state.loss.shape[0]
    return jnp.log((1.0 - floor) * jax.nn.softmax(score) + floor / num_classes)


def update_difficulty(state: ClassDifficulty, classes: jax.Array, losses: jax.Array, *, decay: float,
                      axis_name=None) -> ClassDifficulty:
    """The estimate after one step: each class in `classes [B, ways]` moves towards the mean of `losses [B]` over
    the tasks that drew it (its first observation replaces the initial 0); `axis_name` sums the observations over
    devices first."""
    num_classes = state.loss.shape[0]
    flat = classes.reshape(-1)
    per_class = jnp.broadcast_to(losses.astype(jnp.float32)[:, None], classes.shape).reshape(-1)
    sums = jnp.zeros((num_classes,), jnp.float32).at[flat].add(per_class)
    counts = jnp.zeros((num_classes,), jnp.float32).at[flat].add(1.0)
    if axis_name is not None:
        sums, counts = jax.lax.psum((sums, counts), axis_name)
    drawn = counts > 0
    observed = sums / jnp.maximum(counts, 1.0)
    moved = jnp.where(state.seen > 0, decay * state.loss + (1.0 - decay) * observed, observed)
    return ClassDifficulty(jnp.where(drawn, moved, state.loss), state.seen + drawn.astype(jnp.int32))


def effective_classes(log_weights: jax.Array) -> jax.Array:
    """`exp(entropy)` of the class distribution `log_weights` (normalised): the number of classes that uniform
    sampling over them would match; all `C` for uniform weights."""
    log_p = jax.nn.log_softmax(log_weights)
    return jnp.exp(-jnp.sum(jnp.where(jnp.isfinite(log_p), jnp.exp(log_p) * log_p, 0.0)))
