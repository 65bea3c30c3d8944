"""ANIL on a pretrained encoder: second-order MAML of a linear head (zero init) on pooled sentence features.

The encoder learns through the meta-gradient only. Support and query features are computed once per task and the
inner loop adapts the head on them: the same loss and gradients as `maml_loss(..., mask=head_mask(params))` on the
whole model (tested), without re-running the encoder at every inner step.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp

import fewjax
from fewjax.methods.method import Method, mean_gradient, per_task_metrics
from fewjax.methods.text_backbone import text_backbone
from fewjax.models.bert import linear_head
from fewjax.types import Batch, Task


def build(config) -> Method:
    backbone = text_backbone(config)
    head_logits = functools.partial(linear_head, logit_scale=float(config.text.logit_scale))
    head_loss = fewjax.classification_loss(head_logits)

    def features(params, task):
        feats = backbone.embed(params["encoder"], jnp.concatenate([task.support.x, task.query.x]))
        n = task.support.x.shape[0]
        return Task(Batch(feats[:n], task.support.y), Batch(feats[n:], task.query.y))

    def anil(params, task, *, steps, first_order):
        return fewjax.maml_loss(head_loss, params["head"], features(params, task), inner_steps=steps,
                                inner_lr=config.inner_lr, first_order=first_order)

    def adapt(params, support):
        feats = Batch(backbone.embed(params["encoder"], support.x), support.y)
        head = fewjax.adapt(head_loss, params["head"], feats, steps=config.eval_inner_steps, lr=config.inner_lr)
        return {"encoder": params["encoder"], "head": head}

    def predict(params, support, query_x):
        adapted = adapt(params, support)
        return head_logits(adapted["head"], backbone.embed(params["encoder"], query_x)).argmax(-1)

    train = functools.partial(anil, steps=config.inner_steps, first_order=False)
    test = functools.partial(anil, steps=config.eval_inner_steps, first_order=True)
    return Method("anil", backbone.module, lambda rng, x: backbone.init_classifier(config.ways), mean_gradient(train),
                  per_task_metrics(test), predict, embed=backbone.embed, adapt=adapt)

