"""First-order MAML of a whole pretrained encoder plus a linear head (zero init).

The head adapts at `inner_lr`, the encoder at `inner_lr * text.encoder_lr_scale` (named parameter groups; with
`inner_optimizer="adam"` one Adam per group). `config.remat` rematerialises each layer. Test episodes run one
after the other: a vmapped batch of adapted encoders would not fit in memory.
"""
from __future__ import annotations

import functools

import optax

import fewjax
from fewjax.methods.maml import predictor
from fewjax.methods.method import Method, by_top_level_key, mean_gradient, one_task_at_a_time
from fewjax.methods.text_backbone import text_backbone
from fewjax.models.bert import linear_head


def group_rates(config, make_tx):
    """One optax transformation per named group: `make_tx(inner_lr)` for "head", `make_tx(inner_lr *
    text.encoder_lr_scale)` for "encoder"."""
    return optax.multi_transform({"head": make_tx(config.inner_lr),
                                  "encoder": make_tx(config.inner_lr * config.text.encoder_lr_scale)},
                                 by_top_level_key)


def build(config) -> Method:
    backbone = text_backbone(config)
    if config.inner_optimizer == "adam":
        rates = dict(inner_optimizer=group_rates(config, lambda lr: optax.adam(lr, b1=0.0)))
    else:
        rates = dict(inner_optimizer=group_rates(config, optax.sgd))

    def fomaml(params, task, *, steps):
        return fewjax.maml_loss(backbone.classifier_loss, params, task, inner_steps=steps, first_order=True,
                                remat=config.remat, **rates)

    def adapt(params, support):
        return fewjax.adapt(backbone.classifier_loss, params, support, steps=config.eval_inner_steps,
                            optimizer=rates["inner_optimizer"], first_order=True, remat=config.remat)

    def logits(params, x):
        return linear_head(params["head"], backbone.embed(params["encoder"], x),
                           logit_scale=float(config.text.logit_scale))

    train = functools.partial(fomaml, steps=config.inner_steps)
    test = functools.partial(fomaml, steps=config.eval_inner_steps)
    return Method("fomaml", backbone.module, lambda rng, x: backbone.init_classifier(config.ways),
                  mean_gradient(train), one_task_at_a_time(test), predictor(logits, adapt), embed=backbone.embed,
                  adapt=adapt)


