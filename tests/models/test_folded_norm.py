"""Batch norm folded into a few-channel convolution equals the plain layer in value (float64), and its derivatives of
every order are the plain layer's own; Conv4 creates the same parameters either way."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.models import Conv4
from fewjax.models.folded_norm import conv_batch_norm, plain_conv
from fewjax.models.norm import batch_stat_norm

SAME = ((1, 1), (1, 1))


def plain(x, w, scale, bias, matmul_grad=True):
    return batch_stat_norm(plain_conv(x, w, SAME, matmul_grad), scale, bias)


def layer_inputs(channels, dtype=jnp.float64, offset=3.0):
    """Inputs far from zero mean (as images in [0, 1] are), and one negative scale: a variance formed as a
    difference of large numbers, or a fold that ignored the sign, would show."""
    kx, kw, ks, kb = jax.random.split(jax.random.key(channels), 4)
    x = offset + jax.random.uniform(kx, (6, 7, 5, channels), dtype)
    w = jax.random.normal(kw, (3, 3, channels, 4), dtype)
    scale = jax.random.normal(ks, (4,), dtype).at[0].set(-1.5)
    return x, w, scale, jax.random.normal(kb, (4,), dtype)


@pytest.mark.parametrize("matmul_grad", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_folded_value_equals_the_plain_layer_in_float64(channels, matmul_grad):
    with jax.enable_x64(True):
        args = layer_inputs(channels)
        folded = conv_batch_norm(*args, SAME, 1e-5, matmul_grad)
        chex.assert_trees_all_close(folded, plain(*args, matmul_grad), rtol=1e-10, atol=1e-10)
        chex.assert_trees_all_close(jax.jit(conv_batch_norm, static_argnums=(4, 5, 6))(*args, SAME, 1e-5,
                                                                                         matmul_grad), folded)


def test_folded_value_is_close_in_float32_on_binary_images():
    rng = np.random.default_rng(0)
    x = jnp.asarray((rng.uniform(size=(40, 28, 28, 1)) > 0.8).astype(np.float32))
    _, w, scale, bias = layer_inputs(1, jnp.float32)
    chex.assert_trees_all_close(conv_batch_norm(x, w, scale, bias, SAME), plain(x, w, scale, bias),
                                rtol=1e-4, atol=1e-4)


def test_derivatives_of_every_order_are_the_plain_layers():
    with jax.enable_x64(True):
        x, w, scale, bias = layer_inputs(1)

        def meta(layer):  # one inner step on w, then a loss at the adapted w (second derivatives in x and w)
            inner = lambda x, w: jnp.sum(jnp.sin(layer(x, w, scale, bias)))  # noqa: E731
            return lambda x, w: jnp.sum(layer(x * 0.5, w - 0.3 * jax.grad(inner, 1)(x, w), scale, bias) ** 2)

        folded = lambda x, w, s, b: conv_batch_norm(x, w, s, b, SAME)  # noqa: E731
        loss = lambda layer: lambda *a: jnp.sum(jnp.sin(layer(*a)))  # noqa: E731
        chex.assert_trees_all_close(jax.grad(loss(folded), (0, 1, 2, 3))(x, w, scale, bias),
                                    jax.grad(loss(plain), (0, 1, 2, 3))(x, w, scale, bias), rtol=1e-12)
        chex.assert_trees_all_close(jax.grad(meta(folded), (0, 1))(x, w), jax.grad(meta(plain), (0, 1))(x, w),
                                    rtol=1e-12)


def test_vmap_gives_each_batch_its_own_statistics():
    x, w, scale, bias = layer_inputs(1, jnp.float32)
    xs = jnp.stack([x, 2.0 * x - 1.0])
    batched = jax.vmap(lambda x: conv_batch_norm(x, w, scale, bias, SAME))(xs)
    chex.assert_trees_all_close(batched, jnp.stack([plain(x, w, scale, bias) for x in xs]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("conv_grad", ["matmul", "xla"])
def test_conv4_folds_its_first_block_with_the_same_parameters_values_and_gradients(conv_grad):
    x = jnp.asarray((np.random.default_rng(1).uniform(size=(10, 28, 28, 1)) > 0.7).astype(np.float32))
    folded = Conv4(num_classes=5, conv_grad=conv_grad, fold_norm=True)
    unfolded = Conv4(num_classes=5, conv_grad=conv_grad)
    params = folded.init(jax.random.key(0), x)
    chex.assert_trees_all_equal(params, unfolded.init(jax.random.key(0), x))
    chex.assert_trees_all_close(folded.apply(params, x), unfolded.apply(params, x), rtol=1e-4, atol=1e-4)
    loss = lambda model: lambda p: jnp.sum(jnp.sin(model.apply(p, x)))  # noqa: E731
    chex.assert_trees_all_equal(jax.grad(loss(folded))(params), jax.grad(loss(unfolded))(params))
