"""Prompt tuning (fewjax.methods.text_prompt) on the first layer of MiniLM: the zero-step episode is the prototype
classifier under the prompt, its meta-gradient reaches the prompt only and matches finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fewjax.experiment.data import make_sampler
from fewjax.methods import build_method
from fewjax.methods.text_backbone import prototype_head, text_backbone
from tests.shared import TEXT_READY, text_config

pytestmark = pytest.mark.skipif(not TEXT_READY, reason="shared MiniLM model / text data not found")


@pytest.fixture(scope="module")
def setup():
    config = text_config("prompt", inner_lr=1e-3, inner_steps=0, eval_inner_steps=0)
    config.text.prompt_length = 4
    method = build_method(config)
    tasks = make_sampler(config, "train", seed=0).sample_batch(0, 2)
    params = method.init(jax.random.key(0), tasks.support.x[0])
    return config, method, params, tasks


def test_without_inner_steps_an_episode_is_the_nearest_class_mean_under_the_prompt(setup):
    config, method, params, tasks = setup
    embed = text_backbone(config).embed
    task = jax.tree.map(lambda a: a[0], tasks)
    support = embed(params["encoder"], task.support.x, params["prompt"])
    query = embed(params["encoder"], task.query.x, params["prompt"])
    logits = config.text.logit_scale * query @ prototype_head(support, task.support.y, 3)["kernel"]
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, task.query.y).mean()
    metrics = method.evaluate(params, tasks)
    np.testing.assert_allclose(metrics["loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"][0], np.mean(np.argmax(logits, -1) == task.query.y))
    plain = embed(params["encoder"], task.query.x)
    assert not np.allclose(query, plain, atol=1e-3)  # the prompt does change the embeddings


def test_meta_gradient_reaches_the_prompt_only_and_matches_finite_differences(setup):
    config, method, params, tasks = setup
    grads, _ = method.meta_grad(params, tasks, 0)
    assert all(not np.any(g) for g in jax.tree.leaves(grads["encoder"]))
    direction = jax.random.normal(jax.random.key(1), params["prompt"].shape)
    direction = direction / jnp.linalg.norm(direction)

    def loss(t):
        moved = {**params, "prompt": params["prompt"] + t * direction}
        return float(method.evaluate(moved, tasks)["loss"].mean())

    eps = 1e-2
    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(grads["prompt"], direction)), numeric, rtol=2e-2, atol=1e-4)


@pytest.mark.slow
def test_test_time_tuning_moves_the_prompt(setup):
    config, method, params, tasks = setup
    tuned = build_method(text_config("prompt", inner_lr=1e-3, eval_inner_steps=5, **{"text.prompt_length": 4}))
    task = jax.tree.map(lambda a: a[0], tasks)
    adapted = tuned.adapt(params, task.support)
    assert adapted["prompt"].shape == params["prompt"].shape and not np.allclose(adapted["prompt"], params["prompt"])
    np.testing.assert_array_equal(adapted["head"]["kernel"].shape, (384, 3))


@pytest.mark.parametrize("key, value, message", [("text.prompt_init", "words", "prompt_init='words'"),
                                                 ("text.prompt_length", 0, "prompt_length=0")])
def test_bad_settings_are_named(key, value, message):
    with pytest.raises(ValueError, match=message):
        build_method(text_config("prompt", **{key: value}))
