"""Reptile (Nichol et al. 2018): the meta-gradient is the difference between the weights and their adaptation.

With `config.inner_batch_size` the inner steps take mini-batches (Nichol et al.'s `--inner-batch`), drawn with a key
folded from `config.seed`, the training step and the task's place in the meta-batch (`first_task` + its index): a
resumed run draws the same, and so does a meta-batch split over devices or taken one task at a time.

With `config.inner_state="carried"` the inner optimizer's state runs on from task to task, as in Nichol et al.'s
code, whose inner Adam is never reset: its second-moment estimate is a long average over every task seen, so
parameters with small gradients move little (a fresh Adam moves every parameter by about its learning rate at the
first step). The state travels with the weights: params are `{"model": weights, CARRIED: inner state}`. Every task
of a step starts from the carried state, which then becomes the tasks' mean final state (the code ran the tasks one
after another instead), and test episodes start from it too.

With `config.eval_inner_batch_size` the test-time inner steps take mini-batches of the support set too (Nichol et
al.'s `--eval-batch`: 5 of the support set at 5-way, 10 at 20-way), drawn with one fixed key, so every episode
takes the same positions of its support set at each step (which class sits at which position is itself random).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

import fewjax
from fewjax.methods import backbone
from fewjax.methods.maml import inner_rates, non_transductive_metrics, predictor, task_loss
from fewjax.methods.method import CARRIED, Method, per_task_metrics, task_chunk_size
from fewjax.models import apply_fn

TEST_KEY = 2**31 - 1
"""Folded into the seed's key for the test-time mini-batches (training steps fold in their step number)."""


def build(config) -> Method:
    model = backbone.build_model(config, classes=config.ways)
    apply, chunk, rates = apply_fn(model), task_chunk_size(config), inner_rates(config)
    loss_fn = task_loss(config, apply)
    tx, carried = rates["inner_optimizer"], config.inner_state == "carried"

    def init(rng, x):
        weights = model.init(rng, x)["params"]
        if not carried:
            return weights
        # as float32 leaves (Adam's step count too), so the outer update can assign them like weights
        return {"model": weights, CARRIED: jax.tree.map(lambda a: a.astype(jnp.float32), tx.init(weights))}

    def split(params):  # (weights, the inner optimizer's state to start from, or None)
        if not carried:
            return params, None
        weights = params["model"]
        template = tx.init(weights)
        return weights, jax.tree.map(lambda c, t: c.astype(t.dtype), params[CARRIED], template)

    def adapt(params, support):
        weights, state = split(params)
        batches = config.eval_inner_batch_size
        if batches:
            support = fewjax.inner_minibatches(support, batch_size=batches, steps=config.eval_inner_steps,
                                               rng=jax.random.fold_in(jax.random.PRNGKey(config.seed), TEST_KEY))
        return fewjax.adapt(loss_fn, weights, support, steps=config.eval_inner_steps, lr=rates["inner_lr"],
                            optimizer=tx, optimizer_state=state, minibatches=bool(batches))

    def task_grad(params, task_and_key):
        task, key = task_and_key
        weights, state = split(params)
        out = fewjax.reptile_grad(loss_fn, weights, task, inner_steps=config.inner_steps,
                                  inner_batch_size=config.inner_batch_size or None, rng=key, inner_state=state,
                                  **rates)
        if not carried:
            return out
        pseudo_grad, metrics, after = out
        # the outer optimizer adds minus this to the carried state (fewjax.experiment.state.outer_optimizer)
        old = params[CARRIED]
        return {"model": pseudo_grad, CARRIED: jax.tree.map(lambda o, a: o - a.astype(o.dtype), old, after)}, metrics

    reptile = fewjax.over_tasks(task_grad, chunk_size=chunk)

    def meta_grad(params, tasks, step=None, first_task=0):
        if config.inner_batch_size and step is None:
            raise ValueError("reptile with config.inner_batch_size draws its mini-batches from the training step: "
                             "call meta_grad(params, tasks, step).")
        n = jax.tree.leaves(tasks)[0].shape[0]
        step_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0 if step is None else step)
        keys = jax.random.split(step_key, max(n, config.meta_batch_size))  # one per task of the whole meta-batch
        return reptile(params, (tasks, jnp.take(keys, first_task + jnp.arange(n), axis=0)))

    def transductive_test(params, task):
        loss, metrics = loss_fn(adapt(params, task.support), task.query)
        return loss, {**metrics, "loss": loss}

    test = transductive_test if config.transductive else non_transductive_metrics(apply, adapt)
    return Method("reptile", model, init, meta_grad, per_task_metrics(test, chunk),
                  predictor(apply, adapt, transductive=config.transductive), adapt=adapt)
