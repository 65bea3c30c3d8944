"""EDA on token ids: deterministic, shape-preserving, edits only single-piece words, jittable in episodes."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.data import ArraySource, episodes
from fewjax.text import augment as A

#          0        1        2        3      4        5      6      7       8       9
VOCAB = ["[PAD]", "[CLS]", "[SEP]", "big", "large", "dog", "cat", "##s", "run", "walk"]
CLS, SEP = 1, 2


@pytest.fixture(scope="module")
def tables():
    emb = np.eye(len(VOCAB), dtype=np.float32)
    for a, b in [(3, 4), (5, 6), (8, 9)]:  # make pairs nearest neighbours
        emb[a] += emb[b]
        emb[b] += emb[a]
    return A.eda_tables(emb, VOCAB, k=1)


def test_tables_neighbours_and_flags(tables):
    assert np.asarray(tables.synonyms[:, 0])[[3, 4, 5, 6, 8, 9]].tolist() == [4, 3, 6, 5, 9, 8]
    assert np.asarray(tables.synonyms[[0, 1, 7], 0]).tolist() == [0, 1, 7]  # no neighbours for non-words
    assert np.asarray(tables.word).tolist() == [False] * 3 + [True] * 4 + [False] + [True] * 2
    with pytest.raises(ValueError, match="len\\(vocab\\)"):
        A.eda_tables(np.zeros((3, 2)), VOCAB)


def test_synonym_replacement_skips_specials_pads_and_split_words(tables):
    ids = jnp.array([[CLS, 3, 5, 7, 8, SEP, 0, 0]])  # "big dog##s run": "dog" is continued by "##s"
    out = A.eda(jax.random.key(0), ids, tables, p_synonym=1.0, p_delete=0.0, num_swaps=0)
    assert out.tolist() == [[CLS, 4, 5, 7, 9, SEP, 0, 0]]
    same = A.eda(jax.random.key(0), ids, tables, p_synonym=0.0, p_delete=0.0, num_swaps=0)
    assert same.tolist() == ids.tolist()


def test_swap_and_delete(tables):
    ids = jnp.array([[CLS, 3, 8, SEP, 0, 0]])
    swapped = A.eda(jax.random.key(1), ids, tables, p_synonym=0.0, p_delete=0.0, num_swaps=1)
    assert swapped.tolist() == [[CLS, 8, 3, SEP, 0, 0]]
    deleted = A.eda(jax.random.key(2), ids, tables, p_synonym=0.0, p_delete=1.0, num_swaps=0)
    assert deleted.tolist() == [[CLS, 3, 8, SEP, 0, 0]]  # deleting every word is refused
    ids = jnp.tile(jnp.array([[CLS, 3, 5, 8, 4, 6, SEP, 0]]), (64, 1))
    out = np.asarray(A.eda(jax.random.key(3), ids, tables, p_synonym=0.0, p_delete=0.5, num_swaps=0))
    lengths = (out != 0).sum(1)
    assert lengths.min() >= 3 and lengths.max() <= 8 and len(set(lengths.tolist())) > 1
    assert (out[np.arange(64), lengths - 1] == SEP).all() and (out[:, 0] == CLS).all()  # compacted, [SEP] last


def test_deterministic_given_key_and_jittable(tables):
    ids = jnp.tile(jnp.array([[CLS, 3, 5, 8, 4, 6, SEP, 0]]), (3, 4, 1))
    f = jax.jit(lambda k, x: A.eda(k, x, tables, p_synonym=0.3, p_delete=0.2, num_swaps=1))
    a, b = f(jax.random.key(5), ids), f(jax.random.key(5), ids)
    assert a.shape == ids.shape and a.dtype == ids.dtype and (a == b).all()
    assert not (f(jax.random.key(6), ids) == a).all()
    with pytest.raises(ValueError, match="p_synonym=2"):
        A.eda(jax.random.key(0), ids, tables, p_synonym=2.0)


def test_episode_augment_edits_support_only(tables):
    x = np.tile(np.array([[CLS, 3, 5, 8, 4, 6, SEP, 0]], np.int32), (40, 1))
    src = ArraySource(x, np.arange(40) % 4, list("abcd"))
    aug = A.eda_augment(tables, p_synonym=1.0, p_delete=0.0, num_swaps=0, first=2)
    task = episodes(src, ways=2, shots=2, queries=3, seed=0, augment=aug).sample(0)
    assert (task.support.x[:, 1:6] == [4, 6, 9, 3, 5]).all()
    assert (task.query.x == x[0]).all()
