"""Jittable episode augmentations.

An augmentation is a pure function `augment(key, x) -> x` on the examples of
ONE task laid out class-major, `x: [ways, n, H, W, C]` float32 (n = shots +
queries, support rows first). Each factory below takes `per=`:

- `"example"`: an independent draw for every image,
- `"class"`: one draw per class, shared by its support and query images
  (e.g. rotating a whole class makes a new class, as in Santoro et al. 2016),
- `"task"`: one draw for the whole task.

Pass one (or `compose(...)` of several) as `episodes(..., augment=...)`; the
on-device sampler calls it inside the jitted step.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.data import augment
    >>> aug = augment.compose(augment.random_rot90(per="class"), augment.random_shift(2))
    >>> x = jnp.ones((5, 2, 28, 28, 1))
    >>> aug(jax.random.key(0), x).shape
    (5, 2, 28, 28, 1)
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Augment = Callable[[jax.Array, jax.Array], jax.Array]
_PER = ("example", "class", "task")


def _check_per(per: str) -> None:
    if per not in _PER:
        raise ValueError(f"per={per!r} is not one of {_PER}.")


def _apply(one: Callable[[jax.Array, jax.Array], jax.Array], key: jax.Array, x: jax.Array, per: str) -> jax.Array:
    """Applies `one(key, image[H, W, C])` over `x[ways, n, H, W, C]` with keys drawn `per` example/class/task."""
    if x.ndim != 5:
        raise ValueError(
            f"image augmentations expect one task as [ways, n, H, W, C]; got shape {x.shape}. "
            "They do not apply to non-image sources (tokens, features)."
        )
    ways, n = x.shape[:2]
    over_examples = jax.vmap(one, in_axes=(0, 0))
    if per == "example":
        keys = jax.random.split(key, ways * n).reshape(ways, n)
        return jax.vmap(over_examples)(keys, x)
    shared = jax.vmap(one, in_axes=(None, 0))
    if per == "class":
        return jax.vmap(shared)(jax.random.split(key, ways), x)
    return jax.vmap(shared, in_axes=(None, 0))(key, x)


def random_rot90(*, per: str = "class") -> Augment:
    """Rotates by a uniformly drawn multiple of 90 degrees (square images only)."""
    _check_per(per)

    def one(key, img):
        if img.shape[0] != img.shape[1]:
            raise ValueError(f"random_rot90 needs square images; got {img.shape[:2]}.")
        k = jax.random.randint(key, (), 0, 4)
        return jax.lax.switch(k, [lambda im, i=i: jnp.rot90(im, i, axes=(0, 1)) for i in range(4)], img)

    return lambda key, x: _apply(one, key, x, per)


def random_flip(*, horizontal: bool = True, vertical: bool = False, per: str = "example") -> Augment:
    """Flips left-right (and/or up-down) with probability 1/2 each."""
    _check_per(per)

    def one(key, img):
        kh, kv = jax.random.split(key)
        if horizontal:
            img = jnp.where(jax.random.bernoulli(kh), img[:, ::-1], img)
        if vertical:
            img = jnp.where(jax.random.bernoulli(kv), img[::-1], img)
        return img

    return lambda key, x: _apply(one, key, x, per)


def random_shift(max_shift: int, *, per: str = "example", fill: float = 0.0) -> Augment:
    """Translates by up to `max_shift` pixels along each axis, filling with `fill` (a random crop of the padded image)."""
    if int(max_shift) != max_shift or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative integer; got {max_shift!r}.")
    _check_per(per)
    m = int(max_shift)

    def one(key, img):
        h, w, c = img.shape
        padded = jnp.pad(img, ((m, m), (m, m), (0, 0)), constant_values=fill)
        dy, dx = jax.random.randint(key, (2,), 0, 2 * m + 1)
        return jax.lax.dynamic_slice(padded, (dy, dx, 0), (h, w, c))

    return lambda key, x: _apply(one, key, x, per)


def compose(*augments: Augment) -> Augment:
    """Applies `augments` in order, each with its own key."""

    def composed(key, x):
        for i, aug in enumerate(augments):
            x = aug(jax.random.fold_in(key, i), x)
        return x

    return composed
