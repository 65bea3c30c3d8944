"""A BERT-family text encoder in Flax (linen) that loads Hugging Face checkpoints.

Our own short module (no `transformers`, no torch): weights come from
`model.safetensors` through `safetensors.numpy`, tokenisation from the Rust
`tokenizers` library (`fewjax.models.tokenizer`). It reproduces PyTorch
`BertModel` with eager attention: exact (erf) GELU, LayerNorm eps from the
config, padding keys masked with the dtype's most negative value.

Pieces:

- `BertConfig`: the architecture fields of a Hugging Face `config.json`.
- `BertEncoder(config)`: `__call__(input_ids, *, attention_mask, token_type_ids,
  deterministic)` -> last hidden state `[B, L, H]` (and the pooler output when
  `add_pooler=True`). `dtype=jnp.bfloat16` computes in bfloat16 while the
  parameters stay float32.
- `pool(hidden, mask, *, kind, normalize)`: masked mean or CLS pooling.
- `fewjax.models.pretrained.load_pretrained(name_or_path)` -> `(module, params,
  tokenizer)` from a local folder or a Hub name (the weight mapping lives there).
- `make_embed_fn(module)` -> `embed_fn(params, ids) -> [N, H]` (a fewjax
  `EmbedFn` for prototypical / matching networks on token ids);
  `init_classifier_params` + `make_classifier_loss_fn` for MAML / ANIL /
  fine-tuning with params `{"encoder": ..., "head": {"kernel", "bias"}}`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.models import bert
    >>> cfg = bert.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                       num_attention_heads=4, intermediate_size=64)
    >>> module = bert.BertEncoder(cfg)
    >>> ids = jnp.array([[101, 7, 8, 102, 0, 0]], dtype=jnp.int32) % 100
    >>> params = module.init(jax.random.key(0), ids)["params"]
    >>> embed_fn = bert.make_embed_fn(module, pooling="mean", normalize=True)
    >>> embed_fn(params, ids).shape
    (1, 32)
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from fewjax.kernels.losses import classification_loss
from fewjax.types import Batch

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}
_SUPPORTED_MODEL_TYPES = ("bert",)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture of a BERT encoder (the fields of a Hugging Face `BertConfig`).

    Example:
        >>> BertConfig.from_dict({"hidden_size": 384, "num_attention_heads": 12}).head_dim
        32
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; fix config.json."
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; use one of {sorted(_ACTIVATIONS)}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BertConfig":
        """Keeps the fields this module knows; rejects architectures it cannot run."""
        model_type = d.get("model_type", "bert")
        if model_type not in _SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"model_type={model_type!r} is not supported by fewjax.models.bert (supported: "
                f"{_SUPPORTED_MODEL_TYPES}); pick a BERT checkpoint such as sentence-transformers/all-MiniLM-L6-v2."
            )
        pos = d.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise ValueError(f"position_embedding_type={pos!r} is not supported; only 'absolute'.")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if kwargs.get("pad_token_id") is None:
            kwargs.pop("pad_token_id", None)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "BertConfig":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


class BertEmbeddings(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, *, deterministic: bool, prompt=None):
        cfg = self.config
        emb = lambda n, name: nn.Embed(n, cfg.hidden_size, dtype=self.dtype, name=name)  # noqa: E731
        words = emb(cfg.vocab_size, "word_embeddings")(input_ids)
        if prompt is not None:  # soft prompt vectors take the place of words right after the first ([CLS]) token
            soft = jnp.broadcast_to(prompt.astype(words.dtype), (words.shape[0], *prompt.shape))
            words = jnp.concatenate([words[:, :1], soft, words[:, 1:]], axis=1)
            token_type_ids = jnp.concatenate([token_type_ids[:, :1], jnp.zeros(soft.shape[:2], token_type_ids.dtype),
                                              token_type_ids[:, 1:]], axis=1)
        positions = jnp.arange(words.shape[1])[None, :]
        x = (
            words
            + emb(cfg.max_position_embeddings, "position_embeddings")(positions)
            + emb(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids)
        )
        x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="LayerNorm")(x)
        return nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


class BertSelfAttention(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask_bias, *, deterministic: bool):
        cfg = self.config
        b, l, _ = x.shape
        heads = lambda name: nn.Dense(cfg.hidden_size, dtype=self.dtype, name=name)(x).reshape(  # noqa: E731
            b, l, cfg.num_attention_heads, cfg.head_dim
        )
        q, k, v = heads("query"), heads("key"), heads("value")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.asarray(cfg.head_dim, self.dtype))
        probs = jax.nn.softmax(scores.astype(jnp.float32) + mask_bias, axis=-1).astype(self.dtype)
        probs = nn.Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=deterministic)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, l, cfg.hidden_size)


class BertLayer(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask_bias, deterministic: bool = True):
        cfg = self.config
        ln = lambda name: nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name=name)  # noqa: E731
        drop = lambda y: nn.Dropout(cfg.hidden_dropout_prob)(y, deterministic=deterministic)  # noqa: E731
        attn = BertSelfAttention(cfg, self.dtype, name="attention")(x, mask_bias, deterministic=deterministic)
        x = ln("attention_LayerNorm")(x + drop(nn.Dense(cfg.hidden_size, dtype=self.dtype, name="attention_output")(attn)))
        h = _ACTIVATIONS[cfg.hidden_act](nn.Dense(cfg.intermediate_size, dtype=self.dtype, name="intermediate")(x))
        return ln("output_LayerNorm")(x + drop(nn.Dense(cfg.hidden_size, dtype=self.dtype, name="output")(h)))


class BertEncoder(nn.Module):
    """BERT encoder: embeddings, `num_hidden_layers` post-LN transformer layers, optional pooler.

    Attributes:
      config: the architecture.
      dtype: compute dtype (`jnp.bfloat16` for mixed precision); parameters are
        always float32, softmax and LayerNorm statistics run in float32.
      add_pooler: also return `tanh(dense(hidden[:, 0]))`, BERT's pooler output.
      remat: rematerialise each layer in the backward pass (saves activation
        memory when differentiating through the encoder, e.g. first-order MAML).

    `__call__(input_ids, *, attention_mask=None, token_type_ids=None,
    deterministic=True)` takes int ids `[B, L]`; `attention_mask` `[B, L]`
    (1 = real token, 0 = padding; default all ones) is applied to the keys as in
    Hugging Face eager attention. Returns the last hidden state `[B, L, H]`, or
    `(last_hidden_state, pooler_output [B, H])` when `add_pooler`. Dropout
    (`deterministic=False`) needs a `"dropout"` rng. `prompt` `[P, H]`: soft
    prompt vectors (Lester et al. 2021) inserted after the first token as if they
    were word embeddings; every token attends to them, and the returned hidden
    states are those of the input tokens only (still `[B, L, H]`).
    """

    config: BertConfig
    dtype: Any = jnp.float32
    add_pooler: bool = False
    remat: bool = False

    @nn.compact
    def __call__(self, input_ids, *, attention_mask=None, token_type_ids=None, deterministic: bool = True,
                 prompt=None):
        cfg = self.config
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, length] ints; got shape {input_ids.shape}.")
        soft = 0 if prompt is None else prompt.shape[0]
        if prompt is not None and prompt.shape != (soft, cfg.hidden_size):
            raise ValueError(f"prompt must be [prompt_length, {cfg.hidden_size}] vectors; got shape {prompt.shape}.")
        if input_ids.shape[1] + soft > cfg.max_position_embeddings:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} (+ {soft} prompt vectors) exceeds max_position_embeddings="
                f"{cfg.max_position_embeddings}; tokenize with a smaller max_length."
            )
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = BertEmbeddings(cfg, self.dtype, name="embeddings")(input_ids, token_type_ids, deterministic=deterministic,
                                                               prompt=prompt)
        if soft:
            attention_mask = jnp.concatenate([attention_mask[:, :1], jnp.ones((attention_mask.shape[0], soft),
                                                                              attention_mask.dtype),
                                              attention_mask[:, 1:]], axis=1)
        # Additive key mask [B, 1, 1, L], as transformers' eager attention builds it.
        mask_bias = ((1.0 - attention_mask.astype(jnp.float32)) * jnp.finfo(jnp.float32).min)[:, None, None, :]
        layer_cls = nn.remat(BertLayer, static_argnums=(3,)) if self.remat else BertLayer
        for i in range(cfg.num_hidden_layers):
            x = layer_cls(cfg, self.dtype, name=f"layer_{i}")(x, mask_bias, deterministic)
        if soft:
            x = jnp.concatenate([x[:, :1], x[:, 1 + soft:]], axis=1)
        if not self.add_pooler:
            return x
        pooled = jnp.tanh(nn.Dense(cfg.hidden_size, dtype=self.dtype, name="pooler")(x[:, 0]))
        return x, pooled


def pool(hidden: jax.Array, mask: jax.Array, *, kind: str = "mean", normalize: bool = True) -> jax.Array:
    """Sentence embeddings `[B, H]` (float32) from hidden states `[B, L, H]`.

    `kind="mean"`: mean over positions where `mask` is nonzero (sentence-transformers'
    pooling); `kind="cls"`: the first position. `normalize` divides by the L2 norm.

    Example:
        >>> h = jnp.array([[[1.0, 0.0], [3.0, 0.0], [9.0, 9.0]]]); m = jnp.array([[1, 1, 0]])
        >>> pool(h, m, kind="mean", normalize=False).tolist()
        [[2.0, 0.0]]
    """
    hidden = hidden.astype(jnp.float32)
    if kind == "mean":
        m = mask.astype(jnp.float32)[..., None]
        out = (hidden * m).sum(-2) / jnp.maximum(m.sum(-2), 1e-9)
    elif kind == "cls":
        out = hidden[..., 0, :]
    else:
        raise ValueError(f"pooling kind={kind!r} is not one of 'mean', 'cls'.")
    if normalize:
        out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


def make_embed_fn(
    module: BertEncoder, *, pooling: str = "mean", normalize: bool = True, pad_id: int = 0
) -> Callable[[Any, jax.Array], jax.Array]:
    """An `embed_fn(params, ids, prompt=None) -> [N, H]` float32 for metric-based kernels.

    `ids` are int token ids `[..., L]` padded with `pad_id` (leading axes are
    flattened and restored); the attention mask is `ids != pad_id`; `params` is
    the encoder's `"params"` collection; `prompt`: optional soft prompt vectors
    `[P, H]` (see `BertEncoder`), pooled over with the text's tokens excluded.
    Dropout is off (deterministic).

    Example:
        >>> cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
        ...                  num_attention_heads=2, intermediate_size=32)
        >>> m = BertEncoder(cfg); ids = jnp.ones((5, 2, 8), jnp.int32)
        >>> p = m.init(jax.random.key(0), ids[0])["params"]
        >>> make_embed_fn(m)(p, ids).shape
        (5, 2, 16)
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling={pooling!r} is not one of 'mean', 'cls'.")

    def embed_fn(params, ids, prompt=None):
        lead, length = ids.shape[:-1], ids.shape[-1]
        flat = ids.reshape(-1, length)
        mask = (flat != pad_id).astype(jnp.int32)
        out = module.apply({"params": params}, flat, attention_mask=mask, prompt=prompt)
        hidden = out[0] if isinstance(out, tuple) else out
        return pool(hidden, mask, kind=pooling, normalize=normalize).reshape(*lead, -1)

    return embed_fn


def init_classifier_params(
    key: jax.Array, encoder_params: Any, *, hidden_size: int, num_classes: int, init: str = "zeros"
) -> dict:
    """Params `{"encoder": encoder_params, "head": {"kernel": [H, C], "bias": [C]}}`.

    `init="zeros"` (the usual choice for MAML/ANIL heads: every class starts
    equal, so label permutations do not matter) or `"normal"` (std 0.02, as BERT
    initialises its classification heads).
    """
    if init == "zeros":
        kernel = jnp.zeros((hidden_size, num_classes), jnp.float32)
    elif init == "normal":
        kernel = 0.02 * jax.random.normal(key, (hidden_size, num_classes), jnp.float32)
    else:
        raise ValueError(f"init={init!r} is not one of 'zeros', 'normal'.")
    return {"encoder": encoder_params, "head": {"kernel": kernel, "bias": jnp.zeros((num_classes,), jnp.float32)}}


def make_classifier_loss_fn(
    module: BertEncoder,
    *,
    pooling: str = "mean",
    normalize: bool = True,
    pad_id: int = 0,
    logit_scale: float = 1.0,
) -> Callable[[Any, Batch], "tuple[jax.Array, dict]"]:
    """A fewjax `loss_fn(params, Batch(ids [N, L], labels [N])) -> (loss, {"loss", "accuracy"})`.

    Linear head on pooled encoder features: `logits = logit_scale * pooled @ W + b`;
    params as `init_classifier_params` lays them out. ANIL adapts `params["head"]`
    only; MAML / fine-tuning adapt the whole tree.

    Example:
        >>> cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
        ...                  num_attention_heads=2, intermediate_size=32)
        >>> m = BertEncoder(cfg); ids = jnp.ones((4, 8), jnp.int32)
        >>> enc = m.init(jax.random.key(0), ids)["params"]
        >>> params = init_classifier_params(jax.random.key(1), enc, hidden_size=16, num_classes=2)
        >>> loss, metrics = make_classifier_loss_fn(m)(params, Batch(ids, jnp.array([0, 1, 0, 1])))
        >>> round(float(loss), 4)
        0.6931
    """
    embed_fn = make_embed_fn(module, pooling=pooling, normalize=normalize, pad_id=pad_id)
    ce = classification_loss(lambda params, ids: linear_head(params["head"], embed_fn(params["encoder"], ids),
                                                             logit_scale=logit_scale))

    def loss_fn(params, batch: Batch):
        loss, metrics = ce(params, Batch(batch.x, batch.y.astype(jnp.int32)))
        return loss, {"loss": loss, **metrics}

    return loss_fn


def linear_head(head: dict, features: jax.Array, *, logit_scale: float = 1.0) -> jax.Array:
    """Logits `logit_scale * features @ head["kernel"] + head["bias"]` of the classifier head."""
    return logit_scale * features @ head["kernel"] + head["bias"]
