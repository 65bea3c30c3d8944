import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax
from fewjax.models import Conv4, apply_fn, head_mask


@pytest.mark.parametrize("pool, hw", [("max", 28), ("stride", 28), ("max", 84)])
def test_shapes(pool, hw):
    model = Conv4(pool=pool)
    x = jnp.zeros((3, hw, hw, 1))
    params = model.init(jax.random.key(0), x)["params"]
    out = model.apply({"params": params}, x)
    side = hw // 16 if pool == "max" else -(-hw // 16)
    assert out.shape == (3, 64 * side * side)


def test_batch_norm_uses_each_tasks_own_statistics_under_vmap():
    model = Conv4(num_classes=5, hidden=8)
    xs = jax.random.normal(jax.random.key(1), (3, 4, 28, 28, 1)) * jnp.arange(1.0, 4.0)[:, None, None, None, None]
    params = model.init(jax.random.key(0), xs[0])["params"]
    f = apply_fn(model)
    batched = jax.vmap(f, in_axes=(None, 0))(params, xs)
    looped = jnp.stack([f(params, x) for x in xs])
    chex.assert_trees_all_close(batched, looped, rtol=1e-5, atol=1e-5)
    # Statistics come from the batch given: an example's output changes when its batch-mates change.
    other = f(params, jnp.concatenate([xs[0][:1], xs[1][1:]]))
    assert not np.allclose(other[0], looped[0][0], atol=1e-4)


def test_head_mask_and_anil_on_conv4():
    model = Conv4(num_classes=5, hidden=8)
    x = jax.random.normal(jax.random.key(2), (10, 28, 28, 1))
    params = model.init(jax.random.key(0), x)["params"]
    mask = head_mask(params)
    assert mask["head"]["kernel"] and not mask["conv0"]["kernel"]
    loss_fn = fewjax.classification_loss(apply_fn(model))
    batch = fewjax.Batch(x, jnp.arange(10) % 5)
    adapted = fewjax.adapt(loss_fn, params, batch, steps=1, lr=0.1, mask=mask)
    chex.assert_trees_all_equal(adapted["conv0"], params["conv0"])
    with pytest.raises(ValueError, match="no top-level 'classifier'"):
        head_mask(params, head="classifier")


def test_unknown_norm_is_a_clear_error():
    with pytest.raises(ValueError, match="norm='group'"):
        Conv4(norm="group").init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_conv_grad_choices_agree_to_second_order(norm):
    x = jax.random.normal(jax.random.key(3), (6, 28, 28, 1))
    y = jnp.arange(6) % 3
    models = {g: Conv4(num_classes=3, hidden=8, norm=norm, conv_grad=g) for g in ("xla", "matmul")}
    params = models["xla"].init(jax.random.key(0), x)["params"]
    assert ("bias" in params["conv0"]) == (norm != "batch")  # batch norm would cancel a conv bias
    task = fewjax.Task(fewjax.Batch(x[:3], y[:3]), fewjax.Batch(x[3:], y[3:]))

    def meta_grad(model):
        loss_fn = fewjax.classification_loss(apply_fn(model))
        return jax.grad(lambda p: fewjax.maml_loss(loss_fn, p, task, inner_steps=2, inner_lr=0.4)[0])(params)

    chex.assert_trees_all_close(meta_grad(models["matmul"]), meta_grad(models["xla"]), rtol=2e-4, atol=2e-5)


def test_bad_conv_grad_is_named():
    with pytest.raises(ValueError, match="conv_grad='fast'"):
        Conv4(conv_grad="fast").init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
