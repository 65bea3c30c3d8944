"""The matrix-product-gradient convolution and the 2x2 max-pool equal `lax.conv_general_dilated` in value and in derivatives of every order."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.models.conv import conv2d, conv_general_dilated
from fewjax.models.pool import max_pool_2x2

DN = ("NHWC", "HWIO", "NHWC")


def lax_conv(x, w, padding, stride=1):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=DN)


def inputs(kernel=(3, 3), hw=(6, 5), channels=(2, 4), dtype=jnp.float64):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (3, *hw, channels[0]), dtype)
    w = jax.random.normal(kw, (*kernel, *channels), dtype)
    return x, w


def meta_objective(conv):
    """One MAML-like inner step on w, then a loss at the adapted w: exercises second derivatives in x and w."""

    def inner(x, w):
        return jnp.sum(jnp.sin(conv(x, w)))

    def outer(x, w):
        adapted = w - 0.3 * jax.grad(inner, 1)(x, w)
        return jnp.sum(conv(x * 0.5, adapted) ** 2) + jnp.sum(jax.grad(inner, 0)(x, w) ** 2)

    return outer


PADDINGS = [((1, 1), (1, 1)), ((0, 0), (0, 0)), ((2, 0), (0, 1)), ((2, 2), (3, 3))]
KERNELS = [(3, 3), (1, 1), (2, 3)]


CASES = ([(kernel, padding, (2, 4), 1) for kernel in KERNELS for padding in PADDINGS]
         # one input channel takes the multiply-add forward (`single_channel_conv`); one output channel makes the
         # input gradient's convolution a one-channel one
         + [((3, 3), padding, (1, 4), 1) for padding in PADDINGS] + [((2, 3), ((2, 0), (0, 1)), (1, 1), 1)]
         # strided: the 6x5 input leaves rows and columns no output reads (the input gradient must be zero there)
         + [(kernel, padding, channels, stride) for stride in (2, 3) for kernel in KERNELS for padding in PADDINGS
            for channels in ((2, 4), (1, 4))])


@pytest.mark.parametrize("kernel, padding, channels, stride", CASES)
def test_value_and_derivatives_match_lax_in_float64(kernel, padding, channels, stride):
    with jax.enable_x64(True):
        x, w = inputs(kernel, channels=channels)
        ours = lambda x, w: conv2d(x, w, padding, None, stride)
        ref = lambda x, w: lax_conv(x, w, padding, stride)
        chex.assert_trees_all_close(ours(x, w), ref(x, w), rtol=1e-12, atol=1e-12)
        first = lambda conv: jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), (0, 1))(x, w)
        chex.assert_trees_all_close(first(ours), first(ref), rtol=1e-10, atol=1e-10)
        second = lambda conv: jax.grad(meta_objective(conv), (0, 1))(x, w)
        chex.assert_trees_all_close(second(ours), second(ref), rtol=1e-9, atol=1e-9)


def test_meta_gradient_against_finite_differences():
    with jax.enable_x64(True):
        x, w = inputs()
        f = meta_objective(lambda x, w: conv2d(x, w, ((1, 1), (1, 1))))
        direction = jax.random.normal(jax.random.key(3), w.shape, w.dtype)
        eps = 1e-6
        numeric = (f(x, w + eps * direction) - f(x, w - eps * direction)) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(jax.grad(f, 1)(x, w), direction), numeric, rtol=1e-6)


def test_vmap_over_per_task_kernels_equals_a_loop_and_jit():
    with jax.enable_x64(True):
        x, w = inputs()
        xs, ws = jnp.stack([x, 2 * x, -x]), jnp.stack([w, -w, 0.5 * w])
        g = jax.grad(meta_objective(lambda x, w: conv2d(x, w, ((1, 1), (1, 1)))), 1)
        looped = jnp.stack([g(a, b) for a, b in zip(xs, ws)])
        chex.assert_trees_all_close(jax.vmap(g)(xs, ws), looped, rtol=1e-10)
        chex.assert_trees_all_close(jax.jit(jax.vmap(g))(xs, ws), looped, rtol=1e-10)


@pytest.mark.parametrize("padding", ["SAME", "VALID", [(1, 1), (1, 1)]])
@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])  # conv4's pool="stride" is SAME with strides (2, 2)
def test_flax_conv_with_it_equals_flax_conv(padding, strides):
    x, _ = inputs(dtype=jnp.float32)
    ours = nn.Conv(4, (3, 3), strides=strides, padding=padding, conv_general_dilated=conv_general_dilated)
    ref = nn.Conv(4, (3, 3), strides=strides, padding=padding)
    params = ref.init(jax.random.key(1), x)
    loss = lambda m: lambda p: jnp.sum(m.apply(p, x) ** 2)
    chex.assert_trees_all_close(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(jax.grad(loss(ours))(params), jax.grad(loss(ref))(params), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs", [dict(strides=(2, 1)), dict(kernel_dilation=(2, 2)), dict(feature_group_count=2)])
def test_other_convolutions_fall_back_to_lax(kwargs):
    x, _ = inputs(dtype=jnp.float32)
    ours = nn.Conv(4, (3, 3), conv_general_dilated=conv_general_dilated, **kwargs)
    ref = nn.Conv(4, (3, 3), **kwargs)
    params = ref.init(jax.random.key(1), x)
    chex.assert_trees_all_close(ours.apply(params, x), ref.apply(params, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("hw", [(28, 28), (7, 7), (6, 9)])
def test_max_pool_2x2_equals_flax_max_pool_to_second_order(hw, ties):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
    if ties:  # windows of equal maxima, as after a ReLU: the gradient goes to the first, as in XLA's pooling
        x = jnp.round(jax.nn.relu(x))
    ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    chex.assert_trees_all_close(max_pool_2x2(x), ref(x))
    loss = lambda pool: lambda x: jnp.sum(jnp.sin(pool(x)) * jnp.arange(pool(x).size).reshape(pool(x).shape))
    chex.assert_trees_all_close(jax.grad(loss(max_pool_2x2))(x), jax.grad(loss(ref))(x))
    second = lambda pool: jax.grad(lambda x: jnp.sum(jnp.cos(jax.grad(loss(pool))(x) * x)))(x)
    chex.assert_trees_all_close(second(max_pool_2x2), second(ref), rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(jax.jit(jax.vmap(jax.grad(loss(max_pool_2x2))))(x[:, None]),
                                jax.vmap(jax.grad(loss(ref)))(x[:, None]))
