"""What every method is (a `Method`) and the ways to run a per-task kernel over a meta-batch.

A method is built from fewjax's public kernels exactly as a user would build it (see DESIGN.md):
`over_tasks(partial(kernel, fn, **hyperparameters))`. Nothing here knows about files, loops or devices.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import optax

import fewjax


class Method(NamedTuple):
    name: str
    model: nn.Module
    init: Callable  # (rng, example_x) -> params
    meta_grad: Callable  # (params, tasks, step, first_task=0) -> (grads, metrics): tasks have a leading task axis;
    # step, the training step (traced int), for methods whose objective follows a schedule (MAML++); first_task, the
    # place of tasks[0] in the step's meta-batch (traced int), for methods that draw randomness per task (Reptile's
    # mini-batches), so that any split of a meta-batch (devices, one task at a time) draws what the whole one does
    evaluate: Callable  # (params, tasks) -> per-task metrics {name: [B]}, incl. "accuracy" (or "loss")
    predict: Callable  # (params, support: Batch, query_x) -> scores [n_query, ways] of one episode (argmax: class)
    embed: Callable | None = None  # (params, x) -> features [n, d]: metric methods
    adapt: Callable | None = None  # (params, support: Batch) -> the params adapted to it: MAML family, Reptile
    features: Callable | None = None  # (params, x [N, ...] numpy) -> features [N, d] numpy: methods whose test
    # episodes only compare fixed per-example features (text ProtoNet), so each test example is embedded once
    score: Callable | None = None  # (params, tasks of those features) -> per-task metrics, as `evaluate` on inputs


CARRIED = "carried"
"""The top-level params key of state a method carries from step to step without optimizing it (Reptile's inner Adam
state): its meta-gradient is `old - new`, and the outer optimizer assigns `new` (`outer_optimizer`)."""

PER_TASK_WEIGHTS = ("maml", "fomaml", "metasgd", "anil", "mamlpp", "reptile", "imaml")
"""Methods whose tasks each get their own adapted weights (the CPU runs them one task at a time: `task_loop`)."""


def task_chunk_size(config) -> int | None:
    """How many tasks a device runs at once (vmapped) in the meta-gradient and in evaluation; None: all of them.

    `config.task_loop` (resolved for the backend by `fewjax.methods.resolve_platform`): "vmap" runs a device's
    tasks all at once; "scan" one at a time, with the meta-gradient summed task by task
    (`fewjax.over_tasks_value_and_grad`: activation memory of one task).
    """
    if config.task_loop not in ("vmap", "scan"):
        raise ValueError(f"config.task_loop={config.task_loop!r}: resolve 'auto' with "
                         "fewjax.methods.resolve_platform(config) before building the method.")
    return 1 if config.task_loop == "scan" else None


def mean_gradient(kernel, chunk_size=None):
    """`(params, tasks, step, first_task) -> (mean gradient, mean metrics)` of a per-task `kernel`, `chunk_size`
    tasks at a time (`step` and `first_task` are not used)."""
    def meta_grad(params, tasks, step=None, first_task=0):
        n = jax.tree.leaves(tasks)[0].shape[0]
        value_and_grad = fewjax.over_tasks_value_and_grad(kernel, chunk_size=_divisor(chunk_size, n))
        (_, metrics), grads = value_and_grad(params, tasks)
        return grads, metrics

    return meta_grad


def per_task_metrics(kernel, chunk_size=None):
    """`(params, tasks) -> {name: [B]}`: a per-task `kernel`'s metrics for every task of a batch."""
    def evaluate(params, tasks):
        n = jax.tree.leaves(tasks)[0].shape[0]
        _, metrics = fewjax.map_tasks(kernel, chunk_size=_divisor(chunk_size, n))(params, tasks)
        return metrics

    return evaluate


def one_task_at_a_time(kernel):
    """Per-task metrics `{name: [B]}` with tasks taken one after the other (`lax.map`): a method that adapts a
    whole encoder per task would otherwise hold B encoder copies (and their optimizer states) at once."""
    def evaluate(params, tasks):
        return jax.lax.map(lambda task: kernel(params, task)[1], tasks)

    return evaluate


def no_meta_gradient(name: str):
    def meta_grad(params, tasks, step=None, first_task=0):
        raise ValueError(f"config.method={name!r} has no meta-gradient: set --config.total_steps=0.")

    return meta_grad


def inner_optimizer(config, lr: Any = None) -> optax.GradientTransformation | None:
    """The inner loop's optax optimizer (`config.inner_optimizer="adam"`: Adam with beta1 = 0, as Nichol et al.),
    or None for plain SGD at `config.inner_lr` (which `fewjax.adapt` runs without optax)."""
    if config.inner_optimizer == "adam":
        return optax.adam(config.inner_lr if lr is None else lr, b1=0.0)
    return None


def by_top_level_key(params) -> Any:
    """Labels for `optax.multi_transform`: every leaf named by its top-level key ("encoder", "head")."""
    return {k: jax.tree.map(lambda _: k, v) for k, v in params.items()}


def _divisor(chunk_size, n):
    return chunk_size if chunk_size is not None and n % chunk_size == 0 else None
