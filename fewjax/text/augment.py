"""EDA-style text augmentation on token ids, jittable, deterministic given a key.

Easy Data Augmentation (Wei & Zou, 2019) edits words: synonym replacement,
random swap, random deletion (random insertion is left out). Here the edits
act on token ids `[..., L]` so they run inside the jitted step, on the same
fixed shapes as the episodes:

- synonyms are the encoder's own input-embedding nearest neighbours (cosine),
  among whole-word alphabetic tokens (`eda_tables`), instead of WordNet;
- only single-piece words are edited (a word split into `##` pieces, special
  tokens and padding are left alone), so no word is cut in half;
- deletion shifts the remaining tokens left and pads the end with `pad_id`;
  at least one editable word always survives.

Back-translation (the other common text augmentation) needs translation
models and is out of reach offline; it is not provided.

`eda_augment(...)` returns an `augment(key, x) -> x` for
`fewjax.data.episodes(..., augment=...)`, where `x` is one task's ids
`[ways, shots + queries, L]`; `first=shots` edits the support rows only.

Example:
    >>> import jax, numpy as np
    >>> vocab = ["[PAD]", "[CLS]", "[SEP]", "big", "large", "dog", "cat", "##s"]
    >>> emb = np.eye(8, dtype=np.float32); emb[4] += emb[3]; emb[6] += emb[5]
    >>> tables = eda_tables(emb, vocab, k=1)
    >>> int(tables.synonyms[3, 0]), int(tables.synonyms[5, 0])
    (4, 6)
    >>> ids = jax.numpy.array([[1, 3, 5, 2, 0, 0]])
    >>> eda(jax.random.key(0), ids, tables, p_synonym=1.0, p_delete=0.0, num_swaps=0).tolist()
    [[1, 4, 6, 2, 0, 0]]
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class EDATables(NamedTuple):
    """Per-vocabulary lookups for `eda` (a pytree of arrays)."""

    synonyms: jax.Array  # [V, k] int32 nearest neighbours; a row of its own id where none
    word: jax.Array  # [V] bool: a whole-word alphabetic token that may be edited
    piece: jax.Array  # [V] bool: a "##" continuation piece of a longer word


def _is_word(token: str) -> bool:
    return len(token) > 1 and token.isalpha() and not token.startswith("##")


def eda_tables(
    embeddings: np.ndarray,
    vocab: Sequence[str],
    *,
    k: int = 5,
    query_ids: np.ndarray | None = None,
    chunk: int = 2048,
) -> EDATables:
    """Nearest-neighbour synonym table from an input-embedding matrix `[V, H]`.

    Args:
      embeddings: the encoder's word embeddings, e.g.
        `params["embeddings"]["word_embeddings"]["embedding"]`.
      vocab: token strings indexed by id (`Tokenizer.vocab()`).
      k: neighbours kept per token (synonym replacement draws one uniformly).
      query_ids: only compute neighbours for these ids (e.g. `np.unique` of a
        source's ids) to save time; others keep themselves as "synonym".
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(vocab):
        raise ValueError(f"embeddings {emb.shape} must be [V, H] with V = len(vocab) = {len(vocab)}.")
    if k < 1:
        raise ValueError(f"k={k} must be >= 1.")
    word = np.array([_is_word(t) for t in vocab])
    cand = np.flatnonzero(word)
    if len(cand) <= k:
        raise ValueError(f"only {len(cand)} whole-word tokens in the vocabulary; need more than k={k}.")
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    queries = cand if query_ids is None else np.intersect1d(np.asarray(query_ids).reshape(-1), cand)
    synonyms = np.repeat(np.arange(len(vocab), dtype=np.int32)[:, None], k, axis=1)
    cand_unit = unit[cand].T
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        sim = unit[q] @ cand_unit  # [q, C]
        sim[cand[None, :] == q[:, None]] = -np.inf
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
        synonyms[q] = cand[np.take_along_axis(top, order, axis=1)]
    piece = np.array([t.startswith("##") for t in vocab])
    return EDATables(jnp.asarray(synonyms), jnp.asarray(word), jnp.asarray(piece))


def _eda_row(key, row, tables: EDATables, p_synonym, p_delete, num_swaps, pad_id):
    length = row.shape[0]
    k_syn, k_pick, k_swap, k_del = jax.random.split(key, 4)
    word = tables.word[row]
    # a word followed by a "##" piece is part of a longer word: leave it alone
    continued = jnp.concatenate([tables.piece[row[1:]], jnp.zeros(1, bool)])
    editable = word & ~continued & (row != pad_id)

    pick = jax.random.randint(k_pick, (length,), 0, tables.synonyms.shape[1])
    replace = editable & (jax.random.uniform(k_syn, (length,)) < p_synonym)
    row = jnp.where(replace, tables.synonyms[row, pick], row)

    for kk in jax.random.split(k_swap, num_swaps) if num_swaps else []:
        scores = jnp.where(editable, jax.random.uniform(kk, (length,)), -1.0)
        _, (i, j) = jax.lax.top_k(scores, 2)
        ok = editable.sum() >= 2
        ri, rj = row[i], row[j]
        row = jnp.where(ok, row.at[i].set(rj).at[j].set(ri), row)

    delete = editable & (jax.random.uniform(k_del, (length,)) < p_delete)
    delete = jnp.where((editable & ~delete).any(), delete, False)
    keep = ~delete
    dest = jnp.where(keep, jnp.cumsum(keep) - 1, length)
    return jnp.full_like(row, pad_id).at[dest].set(row, mode="drop")


def eda(
    key: jax.Array,
    ids: jax.Array,
    tables: EDATables,
    *,
    p_synonym: float = 0.1,
    p_delete: float = 0.1,
    num_swaps: int = 1,
    pad_id: int = 0,
) -> jax.Array:
    """Augmented ids, same shape `[..., L]` and dtype; an independent draw per sentence.

    Each editable word is replaced by a random one of its `k` neighbours with
    probability `p_synonym`; then `num_swaps` random pairs of editable words
    are swapped; then each editable word is deleted with probability `p_delete`.
    """
    if not (0.0 <= p_synonym <= 1.0 and 0.0 <= p_delete <= 1.0) or num_swaps < 0:
        raise ValueError(
            f"p_synonym={p_synonym}, p_delete={p_delete} must lie in [0, 1] and num_swaps={num_swaps} be >= 0."
        )
    flat = ids.reshape(-1, ids.shape[-1])
    keys = jax.random.split(key, flat.shape[0])
    out = jax.vmap(lambda k, r: _eda_row(k, r, tables, p_synonym, p_delete, num_swaps, pad_id))(keys, flat)
    return out.reshape(ids.shape)


def eda_augment(
    tables: EDATables,
    *,
    p_synonym: float = 0.1,
    p_delete: float = 0.1,
    num_swaps: int = 1,
    pad_id: int = 0,
    first: int | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """An episode augmentation `augment(key, x[ways, n, L]) -> x` (see `fewjax.data.episodes`).

    `first=shots` augments only the first `shots` rows of each class (the
    support set) and leaves the queries as they are.
    """
    if not (0.0 <= p_synonym <= 1.0 and 0.0 <= p_delete <= 1.0) or num_swaps < 0:
        raise ValueError(
            f"p_synonym={p_synonym}, p_delete={p_delete} must lie in [0, 1] and num_swaps={num_swaps} be >= 0."
        )

    def augment(key, x):
        kw = dict(p_synonym=p_synonym, p_delete=p_delete, num_swaps=num_swaps, pad_id=pad_id)
        if first is None:
            return eda(key, x, tables, **kw)
        return x.at[..., :first, :].set(eda(key, x[..., :first, :], tables, **kw))

    return augment
