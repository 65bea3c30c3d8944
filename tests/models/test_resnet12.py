"""ResNet-12: shapes, the published widths, per-task batch statistics under vmap, both convolution gradients."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.models import ResNet12, apply_fn
from fewjax.models.resnet12 import WIDTHS, scaled_widths

TINY = (2, 3, 4, 5)


def init(model, shape, seed=0):  # jitted: eager Flax init dispatches op by op (slow on a busy CPU)
    return jax.jit(model.init)(jax.random.key(seed), jnp.zeros(shape))["params"]


def test_published_widths_and_block_structure_without_computing():
    shapes = jax.eval_shape(lambda: init(ResNet12(num_classes=5), (1, 84, 84, 3)))
    widths = [3] + list(WIDTHS)
    for i in range(4):
        block = shapes[f"block{i}"]
        assert block["shortcut"]["kernel"].shape == (1, 1, widths[i], widths[i + 1])
        assert block["conv0"]["kernel"].shape == (3, 3, widths[i], widths[i + 1])
        assert block["conv2"]["kernel"].shape == (3, 3, widths[i + 1], widths[i + 1])
        assert "bias" not in block["conv0"] and block["norm2"]["scale"].shape == (widths[i + 1],)
    assert shapes["head"]["kernel"].shape == (5 * 5 * 640, 5)  # 84 -> 42 -> 21 -> 10 -> 5
    assert scaled_widths(64) == (64, 160, 320, 640) and scaled_widths(8) == (8, 20, 40, 80)


@pytest.mark.parametrize("kw, out", [({}, 2 * 2 * 5), ({"global_pool": True}, 5), ({"num_classes": 3}, 3)])
def test_output_shapes(kw, out):
    model = ResNet12(widths=TINY, **kw)
    params = jax.eval_shape(lambda: init(model, (1, 32, 32, 3)))
    assert jax.eval_shape(apply_fn(model), params, jnp.ones((4, 32, 32, 3))).shape == (4, out)


def test_batch_statistics_are_per_task_under_vmap():
    model = ResNet12(widths=TINY, global_pool=True)
    params = init(model, (1, 16, 16, 3))
    f = jax.jit(apply_fn(model))
    r = np.random.default_rng(0)
    tasks = jnp.asarray(r.normal(size=(2, 4, 16, 16, 3)) + np.array([0.0, 3.0])[:, None, None, None, None],
                        jnp.float32)
    vmapped = jax.jit(jax.vmap(apply_fn(model), in_axes=(None, 0)))(params, tasks)
    for t in range(2):
        np.testing.assert_allclose(vmapped[t], f(params, tasks[t]), rtol=1e-5, atol=1e-5)
    pooled = f(params, tasks.reshape(8, 16, 16, 3)).reshape(2, 4, -1)  # one batch: statistics shared
    assert not np.allclose(pooled, vmapped, atol=1e-3)


def test_matmul_and_xla_convolution_gradients_agree_in_float64():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 16, 16, 2)))
        models = [ResNet12(widths=(2, 2, 3, 3), num_classes=2, conv_grad=g, dtype=jnp.float64)
                  for g in ("matmul", "xla")]
        params = init(models[0], (1, 16, 16, 2))
        grads = [jax.jit(jax.grad(lambda p, m=m: jnp.sum(jnp.sin(m.apply({"params": p}, x)))))(params)
                 for m in models]
        chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="widths must name four"):
        init(ResNet12(widths=(2, 3)), (1, 8, 8, 3))
    with pytest.raises(ValueError, match="conv_grad='fast'"):
        init(ResNet12(widths=TINY, conv_grad="fast"), (1, 8, 8, 3))
