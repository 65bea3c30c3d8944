"""MAML++ (Antoniou, Edwards & Storkey 2019, "How to train your MAML"): MAML with five changes, each a switch.

`config.mamlpp` turns each on or off, so that its effect can be measured alone:
- `multi_step_loss`: the query loss after every inner step, weighted (`fewjax.mamlpp_step_weights`), the weights
  annealed towards the last step over `msl_epochs` epochs of `epoch_steps` meta-steps; after that, the last only;
- `first_order_epochs`: derivative-order annealing, first-order meta-gradients for that many epochs, second order
  after (one `lax.cond` on the step: only the branch taken runs);
- `per_step_bn`: the batch-norm weights and biases of every normalisation layer, one copy per inner step,
  meta-learned and never adapted (the statistics are each batch's own: per step and per task already);
- `lslr`: learned per-layer, per-step inner learning rates, initialised at `inner_lr`;
- cosine annealing of the outer learning rate: `optim.schedule="cosine"` with `optim.min_lr` (the trainer's).

Params: `{"model": the adapted weights, "lr": LSLR rates (with lslr), "norm": per-step batch-norm weights (with
per_step_bn)}`. `adapt` returns the model's full weights: adapted, and the last step's batch-norm weights.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import traverse_util

import fewjax
from fewjax.methods import backbone
from fewjax.methods.maml import predictor, task_loss
from fewjax.methods.method import Method, mean_gradient, per_task_metrics, task_chunk_size
from fewjax.models import apply_fn, norm_mask


def build(config) -> Method:
    model = backbone.build_model(config, classes=config.ways)
    apply, chunk, pp = apply_fn(model), task_chunk_size(config), config.mamlpp
    steps = config.inner_steps
    test_steps = config.eval_inner_steps  # = steps whenever weights are learned per step (config.validate)
    loss_of = task_loss(config, apply)

    def loss_fn(weights, batch):  # `weights`: the adapted part, or (adapted, this step's batch-norm weights)
        return loss_of(merge(*weights) if pp.per_step_bn else weights, batch)

    def init(rng, x):
        weights = model.init(rng, x)["params"]
        params = {"model": weights}
        if pp.per_step_bn:
            weights, norm = split_norm(weights)
            params = {"model": weights, "norm": jax.tree.map(lambda w: jnp.stack([w] * steps), norm)}
        if pp.lslr:
            params["lr"] = fewjax.lslr_init(weights, inner_steps=steps, lr=config.inner_lr)
        return params

    def keywords(params):
        return dict(inner_lr=params["lr"] if pp.lslr else config.inner_lr, step_params=params.get("norm"))

    def kernel(params, task, *, first_order, weights=None, inner_steps=steps):
        loss, metrics = fewjax.mamlpp_loss(loss_fn, params["model"], task, inner_steps=inner_steps,
                                           step_weights=weights, first_order=first_order, remat=config.remat,
                                           **keywords(params))
        metrics.pop("query_losses")  # per step: the trainer logs scalars; `loss` is their weighted sum
        return loss, metrics

    def meta_grad(params, tasks, step, first_task=0):
        weights = step_weights(step, config)
        first = mean_gradient(functools.partial(kernel, first_order=True, weights=weights), chunk)
        second = mean_gradient(functools.partial(kernel, first_order=False, weights=weights), chunk)
        if pp.first_order_epochs <= 0:
            return second(params, tasks)
        early = step < pp.first_order_epochs * pp.epoch_steps
        return jax.lax.cond(early, first, second, params, tasks)

    def adapt(params, support):
        kw = keywords(params)
        adapted = fewjax.mamlpp_adapt(loss_fn, params["model"], support, inner_steps=test_steps, **kw)
        if not pp.per_step_bn:
            return adapted
        return merge(adapted, jax.tree.map(lambda w: w[-1], kw["step_params"]))

    test = functools.partial(kernel, first_order=True, inner_steps=test_steps)
    return Method("mamlpp", model, init, meta_grad, per_task_metrics(test, chunk), predictor(apply, adapt),
                  adapt=adapt)


def step_weights(step, config) -> jax.Array | None:
    """The multi-step loss weights at training step `step` (traced), or None (the last step only)."""
    pp = config.mamlpp
    if not pp.multi_step_loss:
        return None
    progress = (step // pp.epoch_steps) / pp.msl_epochs
    annealed = fewjax.mamlpp_step_weights(progress, inner_steps=config.inner_steps)
    last_only = jnp.zeros_like(annealed).at[-1].set(1.0)
    return jnp.where(progress < 1, annealed, last_only)


def split_norm(weights):
    """`(weights without the normalisation layers' parameters, those parameters)`, two nested dicts."""
    flat, mask = traverse_util.flatten_dict(weights), traverse_util.flatten_dict(norm_mask(weights))
    if not any(mask.values()):
        raise ValueError("config.mamlpp.per_step_bn=True needs a model with normalisation layers "
                         "(config.model.norm='batch'); set --config.mamlpp.per_step_bn=False.")
    rest = traverse_util.unflatten_dict({k: v for k, v in flat.items() if not mask[k]})
    return rest, traverse_util.unflatten_dict({k: v for k, v in flat.items() if mask[k]})


def merge(weights, norm):
    """The inverse of `split_norm`."""
    return traverse_util.unflatten_dict({**traverse_util.flatten_dict(weights), **traverse_util.flatten_dict(norm)})
