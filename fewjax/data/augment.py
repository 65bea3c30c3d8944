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

For strokes (Omniglot): `random_rot90`, `random_shift`, `random_affine`. For
photos (RGB in [0, 1]): `random_resized_crop`, `random_flip`, `color_jitter`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.data import augment
    >>> aug = augment.compose(augment.random_rot90(per="class"), augment.random_shift(2))
    >>> x = jnp.ones((5, 2, 28, 28, 1))
    >>> aug(jax.random.key(0), x).shape
    (5, 2, 28, 28, 1)
    >>> photos = augment.compose(augment.random_resized_crop(scale=(0.35, 1.0)), augment.random_flip(),
    ...                          augment.color_jitter(brightness=0.4, contrast=0.4, saturation=0.4))
    >>> jax.jit(photos)(jax.random.key(0), jnp.full((5, 2, 84, 84, 3), 0.5)).shape
    (5, 2, 84, 84, 3)
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

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


def random_resized_crop(*, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        per: str = "example") -> Augment:
    """A random crop resized (bilinearly) back to the image's H x W: Inception-style, as torchvision's
    `RandomResizedCrop(size=(H, W))`.

    The crop's area is a fraction of the image's drawn uniformly from `scale`, its aspect ratio (width / height)
    log-uniformly from `ratio`; a side longer than the image's is cut to it, and the crop's place is uniform within
    the image. `scale=(1, 1), ratio=(1, 1)` gives a square image back unchanged. Samples near the crop's border
    interpolate with the pixels just outside it (the image's own edge is repeated).
    """
    _check_per(per)
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale={scale!r}: need 0 < min <= max <= 1 (fractions of the image's area).")
    r_lo, r_hi = ratio
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"ratio={ratio!r}: need 0 < min <= max (width / height).")

    def one(key, img):
        u = jax.random.uniform(key, (4,))  # area, aspect ratio, corner (row, column): one draw (cheap to compile)
        size = jnp.array(img.shape[:2], jnp.float32)
        area = (lo + (hi - lo) * u[0]) * size[0] * size[1]
        aspect = jnp.exp(np.log(r_lo) + (np.log(r_hi) - np.log(r_lo)) * u[1])
        crop = jnp.minimum(jnp.stack([jnp.sqrt(area / aspect), jnp.sqrt(area * aspect)]), size)  # (height, width)
        corner = u[2:] * (size - crop)
        factor = size / crop  # output = input * factor + translation, in pixel-edge coordinates
        out = jax.image.scale_and_translate(img, img.shape, (0, 1), factor, -corner * factor, method="linear")
        return out.astype(img.dtype)

    return lambda key, x: _apply(one, key, x, per)


GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601 luma weights of (R, G, B): the grey a saturation of 0 gives (as torchvision's `rgb_to_grayscale`)."""


def color_jitter(*, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 per: str = "example") -> Augment:
    """Random brightness, contrast and saturation of images in [0, 1], in that order (torchvision's `ColorJitter`
    without hue, in a fixed order).

    Each factor is drawn uniformly from `[max(0, 1 - s), 1 + s]` for its strength `s`: brightness scales the
    image, contrast moves it towards or away from its mean grey, saturation each pixel towards or away from its
    grey; every step is clipped to [0, 1]. A strength of 0 skips its step (0 everywhere: the identity).
    Saturation needs RGB (C = 3); brightness and contrast also work on grayscale (C = 1).
    """
    _check_per(per)
    strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
    for name, value in strengths.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0; got {value!r}.")

    def gray(img):
        if img.shape[-1] == 1:
            return img
        if img.shape[-1] != 3:
            raise ValueError(f"color_jitter needs RGB (C = 3) or grayscale (C = 1) images; got C = {img.shape[-1]}.")
        return (img @ jnp.asarray(GRAY_WEIGHTS, img.dtype))[..., None]

    def one(key, img):
        if saturation > 0 and img.shape[-1] != 3:
            raise ValueError(f"color_jitter(saturation={saturation}) needs RGB images (C = 3); got C = "
                             f"{img.shape[-1]}: set saturation=0.")
        u = jax.random.uniform(key, (3,), img.dtype)  # one draw for the three factors (cheap to compile)
        factor = lambda i, s: max(0.0, 1.0 - s) + (1.0 + s - max(0.0, 1.0 - s)) * u[i]
        if brightness > 0:
            img = jnp.clip(img * factor(0, brightness), 0.0, 1.0)
        if contrast > 0:
            mean = gray(img).mean()
            img = jnp.clip(mean + (img - mean) * factor(1, contrast), 0.0, 1.0)
        if saturation > 0:
            g = gray(img)
            img = jnp.clip(g + (img - g) * factor(2, saturation), 0.0, 1.0)
        return img

    return lambda key, x: _apply(one, key, x, per)


def compose(*augments: Augment) -> Augment:
    """Applies `augments` in order, each with its own key."""

    def composed(key, x):
        for i, aug in enumerate(augments):
            x = aug(jax.random.fold_in(key, i), x)
        return x

    return composed
