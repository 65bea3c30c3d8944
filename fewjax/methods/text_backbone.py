"""The pretrained sentence encoder a text method starts from, and the pieces built on it."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

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


def prototype_head(features, labels, ways: int) -> dict:
    """A linear head `{"kernel": [d, ways], "bias"}` whose logits are each example's dot product with every class
    mean of `features` (the nearest-class-mean classifier on normalised embeddings).

    Example:
        >>> head = prototype_head(jnp.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]), jnp.array([0, 0, 1]), 2)
        >>> head["kernel"].T.tolist()
        [[2.0, 0.0], [0.0, 2.0]]
    """
    onehot = jax.nn.one_hot(labels, ways, dtype=features.dtype)
    means = (onehot.T @ features) / jnp.maximum(onehot.sum(0), 1.0)[:, None]
    return {"kernel": means.T, "bias": jnp.zeros((ways,), features.dtype)}
