"""The pretrained sentence encoder a text method starts from, and the pieces built on it."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax

from fewjax.models.bert import init_classifier_params, make_classifier_loss_fn, make_embed_fn
from fewjax.text.encoder import fresh_copy, pretrained


class TextBackbone(NamedTuple):
    module: nn.Module
    params: Any  # the pretrained encoder's params (cached: copy before training on them)
    tokenizer: Any
    embed: Callable  # (encoder params, ids) -> pooled sentence embeddings
    classifier_loss: Callable  # ({"encoder", "head"}, Batch) -> (loss, metrics): linear head on the embeddings

    def init_classifier(self, ways: int) -> dict:
        """`{"encoder": a copy of the pretrained weights, "head": zeros}`."""
        return init_classifier_params(jax.random.key(0), fresh_copy(self.params),
                                      hidden_size=self.module.config.hidden_size, num_classes=ways)


def text_backbone(config) -> TextBackbone:
    t = config.text
    module, params, tok = pretrained(config)
    kw = dict(pooling=t.pooling, normalize=bool(t.normalize), pad_id=tok.pad_id)
    return TextBackbone(module, params, tok, make_embed_fn(module, **kw),
                        make_classifier_loss_fn(module, logit_scale=float(t.logit_scale), **kw))
