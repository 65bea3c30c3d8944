"""Prototypical networks on pooled (by default L2-normalised) sentence embeddings of a pretrained encoder.

Meta-trained end to end, or with `total_steps=0` the frozen pretrained encoder (the zero-step baseline). Logits are
cosine similarities divided by `config.temperature` (`distance="cosine"` in the text presets). With
`config.text.support_filter` > 0, near-duplicate support examples leave the class means
(`fewjax.near_duplicate_weights`). Test episodes are scored on features embedded once per test example
(`Method.features`, `Method.score`): the encoder is fixed at test time, so this is the same computation.
"""
from __future__ import annotations

import functools

import fewjax
from fewjax.methods.metric import episode_scores
from fewjax.methods.method import Method, mean_gradient, per_task_metrics
from fewjax.methods.text_backbone import text_backbone
from fewjax.text.encoder import embed_all, fresh_copy


def build(config) -> Method:
    backbone = text_backbone(config)
    metric = dict(distance=config.distance, temperature=config.temperature,
                  near_duplicate_threshold=float(config.text.support_filter) or None)
    kernel = functools.partial(fewjax.protonet_loss, backbone.embed, **metric)

    def init(rng, x):
        return fresh_copy(backbone.params)

    def predict(params, support, query_x):
        return episode_scores(backbone.embed, params, support, query_x, method="protonet", **metric).argmax(-1)

    def features(params, x):
        return embed_all(backbone.embed, params, x, pad_id=backbone.tokenizer.pad_id)

    on_features = functools.partial(fewjax.protonet_loss, lambda params, z: z, ways=config.test_ways, **metric)
    return Method("protonet", backbone.module, init, mean_gradient(functools.partial(kernel, ways=config.ways)),
                  per_task_metrics(functools.partial(kernel, ways=config.test_ways)), predict, embed=backbone.embed,
                  features=features, score=per_task_metrics(on_features))
