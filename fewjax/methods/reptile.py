"""Reptile (Nichol et al. 2018): the meta-gradient is the difference between the weights and their adaptation."""
from __future__ import annotations

import functools

import fewjax
from fewjax.methods import backbone
from fewjax.methods.maml import inner_rates, non_transductive_metrics, predictor, task_loss
from fewjax.methods.method import Method, per_task_metrics, task_chunk_size
from fewjax.models import apply_fn


def build(config) -> Method:
    model = backbone.build_model(config, classes=config.ways)
    apply, chunk, rates = apply_fn(model), task_chunk_size(config), inner_rates(config)
    loss_fn = task_loss(config, apply)

    def init(rng, x):
        return model.init(rng, x)["params"]

    def adapt(params, support):
        return fewjax.adapt(loss_fn, params, support, steps=config.eval_inner_steps, lr=rates["inner_lr"],
                            optimizer=rates["inner_optimizer"])

    reptile = fewjax.over_tasks(
        functools.partial(fewjax.reptile_grad, loss_fn, inner_steps=config.inner_steps, **rates), chunk_size=chunk)
    test = (functools.partial(fewjax.maml_loss, loss_fn, inner_steps=config.eval_inner_steps, first_order=True,
                              remat=config.remat, **rates)
            if config.transductive else non_transductive_metrics(apply, adapt))
    return Method("reptile", model, init, lambda params, tasks, step=None: reptile(params, tasks),
                  per_task_metrics(test, chunk), predictor(apply, adapt, transductive=config.transductive),
                  adapt=adapt)
