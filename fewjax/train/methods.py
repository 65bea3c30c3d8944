"""From a config to the functions a training step needs: the model, the meta-gradient and the evaluator.

Each method is built from fewjax's public kernels exactly as a user would build it (see DESIGN.md):
`over_tasks(partial(kernel, fn, **hyperparameters))`. Nothing here knows about files or loops.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import fewjax
from fewjax.models import MLP, Conv4, ResNet12, apply_fn, head_mask
from fewjax.models.resnet12 import scaled_widths
from fewjax.train.text import TEXT_DATASETS


class Method(NamedTuple):
    name: str
    model: nn.Module
    init: Callable  # (rng, example_x) -> params
    meta_grad: Callable  # (params, tasks) -> (grads, metrics): tasks have a leading task axis
    evaluate: Callable  # (params, tasks) -> per-task metrics {name: [B]}, incl. "accuracy" (or "loss")


MAML_FAMILY = ("maml", "fomaml", "metasgd", "anil")
PER_TASK_WEIGHTS = MAML_FAMILY + ("reptile", "imaml")


def task_chunk_size(config) -> int | None:
    """How many tasks a device runs at once (vmapped) in the meta-gradient and in evaluation; None: all of them.

    `config.task_loop`: "vmap" runs a device's tasks all at once; "scan" one at a time, with the meta-gradient
    summed task by task (`fewjax.over_tasks_value_and_grad`: activation memory of one task); "auto" picks "scan"
    on the CPU for methods whose tasks have their own adapted weights (vmapped, their convolutions become grouped
    convolutions, which XLA:CPU runs several times slower) and "vmap" otherwise. On several devices each device
    runs this on its own tasks (`fewjax.placement.per_device`), so the choice does not depend on their number.
    """
    loop = config.task_loop
    if loop == "auto":
        loop = "scan" if jax.default_backend() == "cpu" and config.method in PER_TASK_WEIGHTS else "vmap"
    return 1 if loop == "scan" else None


def build_model(config) -> nn.Module:
    dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
    metric = config.method in ("protonet", "matching")
    if config.model.name == "mlp":
        return MLP(features=(40, 40), out=1)
    if config.model.name == "resnet12":  # model.hidden: the first block's width (64 -> 64-160-320-640)
        return ResNet12(num_classes=None if metric else config.ways, widths=scaled_widths(config.model.hidden),
                        norm=config.model.norm, dtype=dtype, conv_grad=config.model.conv_grad)
    if config.model.name != "conv4":
        raise ValueError(f"config.model.name={config.model.name!r}: choose conv4, resnet12 or mlp")
    return Conv4(num_classes=None if metric else config.ways, hidden=config.model.hidden, norm=config.model.norm,
                 pool=config.model.pool, dtype=dtype, conv_grad=config.model.conv_grad)


def build_method(config) -> Method:
    if config.dataset in TEXT_DATASETS:
        from fewjax.train.text import build_text_method

        return build_text_method(config)
    model = build_model(config)
    apply = apply_fn(model)
    chunk = task_chunk_size(config)
    regression = config.dataset == "sinusoid"

    def init(rng, x):
        params = model.init(rng, x)["params"]
        if config.method == "metasgd":
            return {"model": params, "lr": jax.tree.map(lambda p: jnp.full_like(p, config.inner_lr), params)}
        return params

    if config.method in ("protonet", "matching"):
        kernel = fewjax.protonet_loss if config.method == "protonet" else fewjax.matching_loss
        extra = {"distance": config.distance} if config.method == "protonet" else {}
        train_loss = functools.partial(kernel, apply, ways=config.ways, temperature=config.temperature, **extra)
        eval_loss = functools.partial(kernel, apply, ways=config.test_ways, temperature=config.temperature, **extra)
        meta_grad = _value_and_grad(train_loss, chunk)
        return Method(config.method, model, init, meta_grad, _per_task(eval_loss, chunk))

    loss_fn = (fewjax.regression_loss if regression else fewjax.classification_loss)(apply)
    inner_tx = _inner_optimizer(config)
    adapt_kw = dict(inner_lr=None if inner_tx else config.inner_lr, inner_optimizer=inner_tx)

    def maml(params, task, *, steps, first_order, diagnostics):
        model_params, kw = params, dict(adapt_kw)
        if config.method == "metasgd":
            model_params, kw["inner_lr"] = params["model"], params["lr"]
        mask = head_mask(model_params) if config.method == "anil" else None
        return fewjax.maml_loss(loss_fn, model_params, task, inner_steps=steps, first_order=first_order,
                                remat=config.remat, mask=mask, diagnostics=diagnostics, **kw)

    # The training step skips maml_loss's diagnostics (two extra forward passes, ~25% of a MAML step);
    # evaluation keeps them, so the accuracy before adaptation is reported there.
    eval_loss = functools.partial(maml, steps=config.eval_inner_steps, first_order=True, diagnostics=True)
    if config.method == "imaml":  # Rajeswaran et al. 2019: proximal inner problem, implicit meta-gradient
        imaml = functools.partial(fewjax.imaml_loss, loss_fn, lam=config.imaml_lam, cg_steps=config.imaml_cg_steps,
                                  cg_damping=config.imaml_cg_damping, **adapt_kw)
        train_loss = functools.partial(imaml, inner_steps=config.inner_steps, diagnostics=False)
        eval_loss = functools.partial(imaml, inner_steps=config.eval_inner_steps, diagnostics=True)
        return Method(config.method, model, init, _value_and_grad(train_loss, chunk), _per_task(eval_loss, chunk))
    if config.method == "reptile":
        meta_grad = fewjax.over_tasks(
            functools.partial(fewjax.reptile_grad, loss_fn, inner_steps=config.inner_steps, **adapt_kw),
            chunk_size=chunk)
    else:
        train_loss = functools.partial(maml, steps=config.inner_steps, first_order=config.method == "fomaml",
                                       diagnostics=False)
        meta_grad = _value_and_grad(train_loss, chunk)
    return Method(config.method, model, init, meta_grad, _per_task(eval_loss, chunk))


def _value_and_grad(kernel, chunk_size=None):
    """`(params, tasks) -> (mean gradient, mean metrics)` of a per-task `kernel`, chunk by chunk (see above)."""
    def meta_grad(params, tasks):
        n = jax.tree.leaves(tasks)[0].shape[0]
        value_and_grad = fewjax.over_tasks_value_and_grad(kernel, chunk_size=_divisor(chunk_size, n))
        (_, metrics), grads = value_and_grad(params, tasks)
        return grads, metrics

    return meta_grad


def _per_task(kernel, chunk_size=None):
    def evaluate(params, tasks):
        n = jax.tree.leaves(tasks)[0].shape[0]
        _, metrics = fewjax.map_tasks(kernel, chunk_size=_divisor(chunk_size, n))(params, tasks)
        return metrics

    return evaluate


def _divisor(chunk_size, n):
    return chunk_size if chunk_size is not None and n % chunk_size == 0 else None


def _inner_optimizer(config) -> optax.GradientTransformation | None:
    if config.inner_optimizer == "adam":
        return optax.adam(config.inner_lr, b1=0.0)
    return None


def outer_optimizer(config) -> optax.GradientTransformation:
    o = config.optim
    if o.schedule == "constant":
        lr: Any = o.lr
    elif o.schedule == "step":
        lr = optax.exponential_decay(o.lr, o.decay_every, o.decay_rate, staircase=True)
    elif o.schedule == "cosine":
        lr = optax.cosine_decay_schedule(o.lr, max(config.total_steps, 1))
    else:
        lr = optax.linear_schedule(o.lr, 0.0, max(config.total_steps, 1))
    tx = optax.adam(lr) if o.name == "adam" else optax.sgd(lr)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), tx) if o.grad_clip > 0 else tx
