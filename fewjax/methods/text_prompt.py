"""Prompt tuning (Lester et al. 2021) of a frozen sentence encoder, from a random, a vocabulary or a meta-learned
start (MetaPrompting, Hou et al. 2022).

`text.prompt_length` soft prompt vectors sit after [CLS] as if they were word embeddings (`prompt=` of
`fewjax.models.bert.BertEncoder`); the encoder's weights never change. Per episode the head starts as the class
means of the support set's embeddings under the prompt (a nearest-prototype classifier, as in ProtoMAML), then
prompt and head take `inner_steps` (training) or `eval_inner_steps` (test) Adam steps at `inner_lr` on the support
set's cross-entropy, logits `text.logit_scale * embedding @ kernel + bias`, and classify the queries.

The prompt starts at `text.prompt_init`: "random" (normal, scaled as the word embeddings) or "vocab" (the word
embeddings of tokens drawn from the vocabulary's 5,000 most frequent whole words, as Lester et al.). With
`total_steps > 0` that start is meta-learned over the training classes by first-order MAML through the episode
above: MetaPrompting's meta-learned initialisation. (MetaPrompting tunes a masked language model's prompt read out
by a verbalizer; here the sentence encoder's pooled embedding feeds the prototype head.)
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fewjax
from fewjax.methods.maml import predictor
from fewjax.methods.method import Method, mean_gradient, one_task_at_a_time
from fewjax.methods.text_backbone import prototype_head, text_backbone
from fewjax.models.bert import linear_head
from fewjax.text.encoder import fresh_copy

INITS = ("random", "vocab")
FREQUENT_WORDS = 5000


def build(config) -> Method:
    t = config.text
    if t.prompt_init not in INITS:
        raise ValueError(f"config.text.prompt_init={t.prompt_init!r}: choose one of {INITS}.")
    if t.prompt_length < 1:
        raise ValueError(f"config.text.prompt_length={t.prompt_length}: must be >= 1 soft prompt vector.")
    backbone = text_backbone(config)
    tx = optax.adam(config.inner_lr)
    scale = float(t.logit_scale)

    def embed(params, x, prompt):
        return backbone.embed(jax.lax.stop_gradient(params["encoder"]), x, prompt)

    def classifier_loss(params):
        """The support or query loss of `{"prompt", "head"}` under `params`' frozen encoder."""
        return fewjax.classification_loss(
            lambda q, x: linear_head(q["head"], embed(params, x, q["prompt"]), logit_scale=scale))

    def start(params, support, ways):
        features = embed(params, support.x, params["prompt"])
        return {"prompt": params["prompt"], "head": prototype_head(features, support.y, ways)}

    def episode(params, task, *, steps, ways):
        return fewjax.maml_loss(classifier_loss(params), start(params, task.support, ways), task, inner_steps=steps,
                                inner_optimizer=tx, first_order=True)

    def adapt(params, support):
        tuned = fewjax.adapt(classifier_loss(params), start(params, support, config.test_ways), support,
                             steps=config.eval_inner_steps, optimizer=tx, first_order=True)
        return {"encoder": params["encoder"], **tuned}

    def logits(params, x):
        return linear_head(params["head"], embed(params, x, params["prompt"]), logit_scale=scale)

    def init(rng, x):
        word_embeddings = backbone.params["embeddings"]["word_embeddings"]["embedding"]
        return {"encoder": fresh_copy(backbone.params),
                "prompt": initial_prompt(word_embeddings, backbone.tokenizer.vocab(), length=t.prompt_length,
                                         kind=t.prompt_init, seed=config.seed)}

    train = functools.partial(episode, steps=config.inner_steps, ways=config.ways)
    test = functools.partial(episode, steps=config.eval_inner_steps, ways=config.test_ways)
    return Method("prompt", backbone.module, init, mean_gradient(train), one_task_at_a_time(test),
                  predictor(logits, adapt), adapt=adapt)


def initial_prompt(word_embeddings, vocab: list[str], *, length: int, kind: str, seed: int) -> jax.Array:
    """The prompt's start `[length, H]`: "vocab", the embeddings of `length` distinct tokens drawn from the first
    5,000 whole words of `vocab` (alphabetic, two letters or more; BERT's WordPiece lists them by frequency);
    "random", normal vectors with the word embeddings' standard deviation.

    Example:
        >>> emb = jnp.arange(12.0).reshape(6, 2); vocab = ["[PAD]", "the", "of", "##s", "a", "and"]
        >>> sorted(initial_prompt(emb, vocab, length=3, kind="vocab", seed=0)[:, 0].tolist())
        [2.0, 4.0, 10.0]
    """
    if kind == "vocab":
        words = [i for i, w in enumerate(vocab) if len(w) > 1 and w.isalpha()][:FREQUENT_WORDS]
        if len(words) < length:
            raise ValueError(f"prompt_init='vocab': the vocabulary has {len(words)} whole words, fewer than "
                             f"prompt_length={length}; use prompt_init='random'.")
        ids = np.random.default_rng(seed).choice(words, size=length, replace=False)
        return jnp.asarray(word_embeddings)[jnp.asarray(ids)]
    std = jnp.std(word_embeddings)
    return std * jax.random.normal(jax.random.key(seed), (length, word_embeddings.shape[-1]), word_embeddings.dtype)
