import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.data import augment

# one task: 3 classes x 4 examples of distinct 5x5 images
X = jnp.asarray(np.random.default_rng(0).random((3, 4, 5, 5, 1)), jnp.float32)


def rotations(img):
    return [np.rot90(np.asarray(img), k, axes=(0, 1)) for k in range(4)]


def which_rotation(orig, out):
    matches = [k for k, r in enumerate(rotations(orig)) if np.array_equal(r, np.asarray(out))]
    assert len(matches) == 1
    return matches[0]


@jax.jit
def apply_all(key):
    return (augment.random_rot90(per="class")(key, X), augment.random_rot90(per="task")(key, X),
            augment.random_rot90(per="example")(key, X))


def test_rot90_granularity():
    per_class, per_task, per_example = apply_all(jax.random.key(1))
    ks = [[which_rotation(X[c, i], per_class[c, i]) for i in range(4)] for c in range(3)]
    assert all(len(set(row)) == 1 for row in ks)  # one draw per class
    assert len({row[0] for row in ks}) > 1  # ... not one per task
    assert len({which_rotation(X[c, i], per_task[c, i]) for c in range(3) for i in range(4)}) == 1
    ex = {which_rotation(X[c, i], per_example[c, i]) for c in range(3) for i in range(4)}
    assert len(ex) > 1


def test_shift_moves_within_bounds_and_fills():
    img = jnp.zeros((1, 1, 7, 7, 1)).at[0, 0, 3, 3, 0].set(1.0)
    shift = jax.jit(augment.random_shift(2))
    seen = set()
    for seed in range(30):
        out = np.asarray(shift(jax.random.key(seed), img))[0, 0, :, :, 0]
        assert out.sum() == 1.0
        y, x = np.argwhere(out)[0]
        assert abs(y - 3) <= 2 and abs(x - 3) <= 2
        seen.add((y, x))
    assert len(seen) > 5


def test_flip_and_compose_keep_shape():
    flip = augment.random_flip(horizontal=True, vertical=True, per="example")
    out = jax.jit(augment.compose(flip, augment.random_shift(1)))(jax.random.key(0), X)
    assert out.shape == X.shape and out.dtype == jnp.float32
    flipped = np.asarray(jax.jit(flip)(jax.random.key(3), X))
    for c in range(3):
        for i in range(4):
            o = np.asarray(X[c, i])
            assert any(np.array_equal(flipped[c, i], v) for v in (o, o[:, ::-1], o[::-1], o[::-1, ::-1]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="per='image'"):
        augment.random_flip(per="image")
    with pytest.raises(ValueError, match="max_shift"):
        augment.random_shift(-1)
    with pytest.raises(ValueError, match=r"\[ways, n, H, W, C\]"):
        augment.random_flip()(jax.random.key(0), jnp.zeros((3, 4, 7)))


@pytest.mark.parametrize("matrix,offset", [
    (np.eye(2), np.zeros(2)),
    (np.array([[0.9, 0.2], [-0.1, 1.1]]), np.array([0.7, -1.3])),
    (np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]), np.array([1.0, 2.0])),
])
def test_affine_transform_equals_scipy(matrix, offset):
    import scipy.ndimage

    img = np.asarray(X[0, 0])
    ours = augment.affine_transform(jnp.asarray(img), jnp.asarray(matrix, jnp.float32),
                                    jnp.asarray(offset, jnp.float32))
    ref = scipy.ndimage.affine_transform(img[..., 0], matrix, offset, order=1, mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(np.asarray(ours)[..., 0], ref, atol=1e-5)


def test_random_affine_is_identity_at_zero_and_distorts_otherwise():
    key = jax.random.key(3)
    same = augment.random_affine(max_rotation=0, max_shear=0, max_scale=0, max_shift=0)(key, X)
    np.testing.assert_allclose(np.asarray(same), np.asarray(X), atol=1e-6)
    out = jax.jit(augment.random_affine(per="example"))(key, X)
    assert out.shape == X.shape and not np.allclose(np.asarray(out), np.asarray(X))
    assert float(jnp.abs(out[0, 0] - out[0, 1]).max()) > 0  # independent draws per example
    with pytest.raises(ValueError, match="max_scale"):
        augment.random_affine(max_scale=1.5)


RGB = jnp.asarray(np.random.default_rng(1).random((3, 4, 12, 12, 3)), jnp.float32)  # one task of photos in [0, 1]


def test_resized_crop_keeps_shape_and_is_the_identity_at_full_scale():
    full = augment.random_resized_crop(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out, same = jax.jit(lambda k: (augment.random_resized_crop(scale=(0.2, 1.0))(k, RGB), full(k, RGB)))(
        jax.random.key(0))
    assert out.shape == RGB.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0  # bilinear: within the input's range
    assert not np.allclose(np.asarray(out), np.asarray(RGB))
    np.testing.assert_allclose(np.asarray(same), np.asarray(RGB), atol=1e-6)


def test_resized_crop_takes_the_crop_it_draws():
    """A quarter-area square crop (scale 1/4, ratio 1) of a ramp is a 2x upscaled part of the ramp: its values span
    about half the ramp's range and are evenly spaced."""
    ramp = jnp.broadcast_to(jnp.arange(12, dtype=jnp.float32)[None, :, None] / 11, (12, 12, 1))
    x = jnp.broadcast_to(ramp, (1, 5, 12, 12, 1))  # five examples, five independent crops
    quarter = jax.jit(augment.random_resized_crop(scale=(0.25, 0.25), ratio=(1.0, 1.0)))
    rows = np.asarray(quarter(jax.random.key(0), x))
    for row in rows[0, :, 6, :, 0]:
        steps = np.diff(row[1:-1])  # away from the image edge, where the edge pixel repeats
        np.testing.assert_allclose(steps, 0.5 / 11, atol=1e-5)
        assert 5 / 11 - 1e-5 <= row[-1] - row[0] <= 6 / 11 + 1e-5
    assert len({round(float(r[0]), 4) for r in rows[0, :, 6, :, 0]}) > 1  # different places


def test_color_jitter_zero_is_the_identity_and_values_stay_in_range():
    np.testing.assert_array_equal(np.asarray(augment.color_jitter()(jax.random.key(0), RGB)), np.asarray(RGB))
    strong = augment.color_jitter(brightness=0.8, contrast=0.8, saturation=0.8)
    grey = jnp.full((1, 1, 2, 2, 3), 0.5)

    @jax.jit
    def outputs(key):
        return (strong(key, RGB), augment.color_jitter(saturation=1.0)(key, grey),
                augment.color_jitter(brightness=0.4, contrast=0.4)(key, X))

    for seed in range(3):
        out, grey_out, one_channel = map(np.asarray, outputs(jax.random.key(seed)))
        assert out.shape == RGB.shape and out.min() >= 0.0 and out.max() <= 1.0
        assert not np.allclose(out, np.asarray(RGB))
        np.testing.assert_allclose(grey_out, 0.5, atol=1e-6)  # a grey image has no saturation to change
        assert one_channel.shape == X.shape and one_channel.min() >= 0.0 and one_channel.max() <= 1.0
    with pytest.raises(ValueError, match=r"saturation=0.4.*RGB"):
        augment.color_jitter(saturation=0.4)(jax.random.key(0), X)
    with pytest.raises(ValueError, match="brightness must be >= 0"):
        augment.color_jitter(brightness=-0.1)


def test_photo_augmentations_per_class_share_one_draw():
    same = jnp.broadcast_to(RGB[:, :1], RGB.shape)  # every example of a class the same image
    crop, jitter = augment.random_resized_crop(per="class"), augment.color_jitter(brightness=0.5, contrast=0.5,
                                                                                   saturation=0.5, per="class")
    by_class = jax.jit(lambda k: (crop(k, same), jitter(k, same),
                                  augment.random_resized_crop(per="example")(k, same)))(jax.random.key(2))
    for out in map(np.asarray, by_class[:2]):
        for c in range(3):
            for i in range(1, 4):
                np.testing.assert_array_equal(out[c, i], out[c, 0])
        assert not np.allclose(out[0, 0], np.asarray(same[0, 0]))  # ... and it does change them
    per_example = np.asarray(by_class[2])
    assert not np.allclose(per_example[0, 1], per_example[0, 0])


def test_photo_augmentation_arguments():
    with pytest.raises(ValueError, match=r"scale=\(0.0, 1.0\)"):
        augment.random_resized_crop(scale=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"ratio=\(2.0, 1.0\)"):
        augment.random_resized_crop(ratio=(2.0, 1.0))
    with pytest.raises(ValueError, match="per='batch'"):
        augment.color_jitter(per="batch")
