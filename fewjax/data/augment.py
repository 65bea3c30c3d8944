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


def affine_transform(img: jax.Array, matrix: jax.Array, offset: jax.Array, *, fill: float = 0.0) -> jax.Array:
    """`img[H, W, C]` resampled bilinearly at `matrix @ (row, col) + offset`.

    As `scipy.ndimage.affine_transform(..., order=1, mode="grid-constant", cval=fill)`: outside the image is `fill`.
    """
    h, w = img.shape[:2]
    grid = jnp.stack(jnp.meshgrid(jnp.arange(h, dtype=img.dtype), jnp.arange(w, dtype=img.dtype), indexing="ij"))
    coords = jnp.einsum("ij,jhw->ihw", matrix.astype(img.dtype), grid) + offset.astype(img.dtype)[:, None, None]
    sample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, list(coords), order=1, mode="constant",
                                                               cval=fill)
    return jax.vmap(sample, in_axes=2, out_axes=2)(img)


def random_affine(*, max_rotation: float = 10.0, max_shear: float = 0.3, max_scale: float = 0.2,
                  max_shift: float = 2.0, per: str = "example", fill: float = 0.0) -> Augment:
    """Small random distortions of strokes about the image centre, bilinear (the one-shot literature's augmentation).

    Draws uniformly: a rotation in degrees from [-max_rotation, max_rotation], a shear factor from
    [-max_shear, max_shear], a scale per axis from [1 - max_scale, 1 + max_scale] and a shift per axis in pixels
    from [-max_shift, max_shift]. All zero gives the image back unchanged.
    """
    _check_per(per)
    for name, value in (("max_rotation", max_rotation), ("max_shear", max_shear), ("max_scale", max_scale),
                        ("max_shift", max_shift)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0; got {value!r}.")
    if max_scale >= 1:
        raise ValueError(f"max_scale must be < 1 (scales lie in [1 - max_scale, 1 + max_scale]); got {max_scale!r}.")

    def one(key, img):
        k_rot, k_shear, k_scale, k_shift = jax.random.split(key, 4)
        angle = jnp.deg2rad(jax.random.uniform(k_rot, (), minval=-max_rotation, maxval=max_rotation))
        shear = jax.random.uniform(k_shear, (), minval=-max_shear, maxval=max_shear)
        scale = jax.random.uniform(k_scale, (2,), minval=1 - max_scale, maxval=1 + max_scale)
        shift = jax.random.uniform(k_shift, (2,), minval=-max_shift, maxval=max_shift)
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        rotation = jnp.array([[cos, -sin], [sin, cos]])
        matrix = rotation @ jnp.array([[1.0, shear], [0.0, 1.0]]) @ jnp.diag(1.0 / scale)  # output -> input
        centre = (jnp.array(img.shape[:2], jnp.float32) - 1) / 2
        return affine_transform(img, matrix, centre - matrix @ centre - shift, fill=fill)

    return lambda key, x: _apply(one, key, x, per)


def compose(*augments: Augment) -> Augment:
    """Applies `augments` in order, each with its own key."""

    def composed(key, x):
        for i, aug in enumerate(augments):
            x = aug(jax.random.fold_in(key, i), x)
        return x

    return composed
