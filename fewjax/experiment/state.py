"""A run's training state (params, optimizer state, EMA, step) and the outer optimizer that updates it.

The trainer steps it (`fewjax.train.step`); checkpoints store it; `fewjax.load` rebuilds its shape to restore into.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fewjax.data.task_sampling import init_difficulty
from fewjax.methods.method import CARRIED
from fewjax.methods.text_distill import FROZEN


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: the number of updates applied
    params: Any
    opt_state: Any
    ema_params: Any  # the exponential moving average of params, or None
    nonfinite_step: jax.Array  # int32 scalar: first step with a non-finite loss, -1 if none
    sampling: Any = None  # adaptive task sampling's per-class difficulty (fewjax.data.task_sampling), or None


def init_state(params, tx: optax.GradientTransformation, *, ema: bool, task_classes: int | None = None) -> TrainState:
    """The state before the first update. `task_classes`: the training split's class count when the run samples
    its tasks adaptively (`config.task_sampling="adaptive"`): the state then carries each class's difficulty
    estimate (checkpointed with the rest); None for uniform sampling (no estimate, checkpoints as before)."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params) if ema else None,
        nonfinite_step=jnp.full((), -1, jnp.int32),
        sampling=None if task_classes is None else init_difficulty(task_classes),
    )


def outer_optimizer(config) -> optax.GradientTransformation:
    """`config.optim`: Adam or SGD, a learning-rate schedule, optional global-norm clipping; params under a
    frozen top-level name (distillation's teacher) get no update, and carried state (`CARRIED`: Reptile's inner
    optimizer state with `config.inner_state="carried"`) is assigned: its meta-gradient is `old - new`."""
    o = config.optim
    schedules = {
        "constant": lambda: o.lr,
        "step": lambda: optax.exponential_decay(o.lr, o.decay_every, o.decay_rate, staircase=True),
        "cosine": lambda: optax.cosine_decay_schedule(o.lr, max(config.total_steps, 1),
                                                      alpha=o.min_lr / o.lr if o.lr else 0.0),
        "linear": lambda: optax.linear_schedule(o.lr, o.min_lr, max(config.total_steps, 1)),
    }
    lr = schedules[o.schedule]()
    tx = {"adam": optax.adam, "sgd": optax.sgd}[o.name](lr)
    if o.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
    if config.method == "distill":
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                                   lambda p: {k: jax.tree.map(lambda _: "frozen" if k in FROZEN else "train", v)
                                              for k, v in p.items()})
    if config.method == "reptile" and config.inner_state == "carried":
        tx = optax.multi_transform({"train": tx, "assign": optax.scale(-1.0)},
                                   lambda p: {k: jax.tree.map(lambda _: "assign" if k == CARRIED else "train", v)
                                              for k, v in p.items()})
    return tx
