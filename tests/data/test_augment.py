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
