"""Fine-tuning baseline: no meta-training (`total_steps=0`). Per test episode the pretrained encoder plus a fresh
zero head are fine-tuned on the support set for `eval_inner_steps` Adam steps (head at `inner_lr`, encoder at
`inner_lr * text.encoder_lr_scale`), optionally with the L2-SP penalty `text.l2sp * ||w - w_pretrained||^2`
(Li et al. 2018), then scored on the query set. Episodes run one after the other (`lax.map`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import fewjax
from fewjax.methods.maml import predictor
from fewjax.methods.method import Method, no_meta_gradient, one_task_at_a_time
from fewjax.methods.text_backbone import text_backbone
from fewjax.methods.text_fomaml import group_rates
from fewjax.models.bert import init_classifier_params, linear_head
from fewjax.text.encoder import fresh_copy


def build(config) -> Method:
    backbone = text_backbone(config)
    t = config.text
    tx = group_rates(config, optax.adam)
    hidden = backbone.module.config.hidden_size

    def support_loss(params, batch, prior):
        loss, metrics = backbone.classifier_loss(params, batch)
        if t.l2sp > 0:
            sq = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(params["encoder"]), jax.tree.leaves(prior)))
            loss = loss + t.l2sp * sq
        return loss, metrics

    def adapt(encoder, support):
        params = init_classifier_params(jax.random.key(0), encoder, hidden_size=hidden, num_classes=config.test_ways)
        prior = jax.lax.stop_gradient(encoder)
        return fewjax.adapt(lambda p, b: support_loss(p, b, prior), params, support, steps=config.eval_inner_steps,
                            optimizer=tx, first_order=True, remat=config.remat)

    def finetune_one(encoder, task):
        adapted = adapt(encoder, task.support)
        _, metrics = backbone.classifier_loss(adapted, task.query)
        metrics["support_loss_after"] = support_loss(adapted, task.support, jax.lax.stop_gradient(encoder))[0]
        return None, metrics

    def logits(params, x):
        return linear_head(params["head"], backbone.embed(params["encoder"], x), logit_scale=float(t.logit_scale))

    return Method("finetune", backbone.module, lambda rng, x: fresh_copy(backbone.params), no_meta_gradient("finetune"),
                  one_task_at_a_time(finetune_one), predictor(logits, adapt), embed=backbone.embed, adapt=adapt)
