"""Reptile (Nichol et al. 2018): the meta-gradient is the difference between the weights and their adaptation.

With `config.inner_batch_size` the inner steps take mini-batches (Nichol et al.'s `--inner-batch`), drawn with a key
folded from `config.seed`, the training step and the task's place in the meta-batch: a resumed run draws the same.
"""
from __future__ import annotations

import functools

import jax

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

    def task_grad(params, task_and_key):
        task, key = task_and_key
        return fewjax.reptile_grad(loss_fn, params, task, inner_steps=config.inner_steps,
                                   inner_batch_size=config.inner_batch_size or None, rng=key, **rates)

    reptile = fewjax.over_tasks(task_grad, chunk_size=chunk)

    def meta_grad(params, tasks, step=None):
        if config.inner_batch_size and step is None:
            raise ValueError("reptile with config.inner_batch_size draws its mini-batches from the training step: "
                             "call meta_grad(params, tasks, step).")
        n = jax.tree.leaves(tasks)[0].shape[0]
        keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 0 if step is None else step), n)
        return reptile(params, (tasks, keys))

    test = (functools.partial(fewjax.maml_loss, loss_fn, inner_steps=config.eval_inner_steps, first_order=True,
                              remat=config.remat, **rates)
            if config.transductive else non_transductive_metrics(apply, adapt))
    return Method("reptile", model, init, meta_grad,
                  per_task_metrics(test, chunk), predictor(apply, adapt, transductive=config.transductive),
                  adapt=adapt)
