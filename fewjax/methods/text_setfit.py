"""SetFit-style episodes (Tunstall et al. 2022) on the pretrained sentence encoder.

Per test episode the encoder is fine-tuned for `eval_inner_steps` Adam steps at `inner_lr` on `fewjax.setfit_loss`
(the cosine-similarity loss over every pair of the support set: each step embeds the support set once), then a
head fitted on the fine-tuned support embeddings classifies the queries: multinomial logistic regression
(`text.setfit_head="logistic"`, `fewjax.logistic_head` with penalty `text.head_l2`, as the library's scikit-learn
head) or the nearest class mean (`"prototype"`). Episodes run one after the other (`lax.map`).

Nothing has to be meta-trained (`total_steps=0`). With `total_steps > 0` the encoder is first meta-trained on the
training classes with ProtoNet episodes (the meta-trained variant), then adapted per test episode as above.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import optax

import fewjax
from fewjax.methods.maml import predictor
from fewjax.methods.method import Method, mean_gradient, one_task_at_a_time
from fewjax.methods.text_backbone import prototype_head, text_backbone
from fewjax.text.encoder import fresh_copy

HEADS = ("logistic", "prototype")


def build(config) -> Method:
    backbone = text_backbone(config)
    t, ways = config.text, config.test_ways
    tx = optax.adam(config.inner_lr)

    def adapt(encoder, support):
        encoder = fewjax.adapt(lambda p, b: fewjax.setfit_loss(backbone.embed, p, b), encoder, support,
                               steps=config.eval_inner_steps, optimizer=tx, first_order=True, remat=config.remat)
        features = backbone.embed(encoder, support.x)
        if t.setfit_head == "prototype":
            head = prototype_head(features, support.y, ways)
        else:
            head = fewjax.logistic_head(features, support.y, classes=ways, l2=t.head_l2)
        return {"encoder": encoder, "head": head}

    def logits(params, x):
        return backbone.embed(params["encoder"], x) @ params["head"]["kernel"] + params["head"]["bias"]

    def setfit_one(encoder, task):
        scores = logits(adapt(encoder, task.support), task.query.x)
        loss = optax.softmax_cross_entropy_with_integer_labels(scores, task.query.y).mean()
        return None, {"loss": loss, "accuracy": jnp.mean(scores.argmax(-1) == task.query.y)}

    protonet = functools.partial(fewjax.protonet_loss, backbone.embed, distance=config.distance,
                                 temperature=config.temperature, ways=config.ways)
    return Method("setfit", backbone.module, lambda rng, x: fresh_copy(backbone.params), mean_gradient(protonet),
                  one_task_at_a_time(setfit_one), predictor(logits, adapt), embed=backbone.embed, adapt=adapt)

