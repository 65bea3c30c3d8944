import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax
from fewjax.data import ArraySource, episodes


@pytest.fixture(scope="module")
def sampler():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    return episodes(ArraySource(x, np.arange(300) % 10, [str(i) for i in range(10)]), ways=5, shots=1, queries=2,
                    seed=0)


def scripted_eval(params, tasks):
    """Per-task 'accuracy' read off the task itself, so the expected summary is computable by hand."""
    return {"accuracy": (tasks.support.x[:, 0, 0] > 0).astype(jnp.float32)}


@pytest.mark.parametrize("batch_size", [7, 50])
def test_mean_and_confidence_interval_by_hand(sampler, batch_size):
    result = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=45, batch_size=batch_size, seed=3)
    values = (sampler.eval_set(45, seed=3).support.x[:, 0, 0] > 0).astype(np.float64)
    assert result["episodes"] == 45
    np.testing.assert_allclose(result["accuracy"], values.mean(), rtol=1e-12)
    np.testing.assert_allclose(result["ci95"], 1.96 * values.std(ddof=1) / np.sqrt(45), rtol=1e-12)


def test_same_seed_same_score_other_seed_other_episodes(sampler):
    a = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=60, batch_size=16, seed=1)
    b = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=60, batch_size=16, seed=1)
    c = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=60, batch_size=16, seed=2)
    assert a["accuracy"] == b["accuracy"] and a["accuracy"] != c["accuracy"]


def test_one_compiled_program_serves_a_ragged_last_batch(sampler):
    traces = []

    def counted(params, tasks):
        traces.append(1)
        return scripted_eval(params, tasks)

    fewjax.evaluate(counted, None, sampler, num_episodes=25, batch_size=10)
    assert len(traces) == 1


def test_unknown_metric_and_bad_sizes_are_clear_errors(sampler):
    with pytest.raises(ValueError, match="metric='loss' is not among"):
        fewjax.evaluate(scripted_eval, None, sampler, num_episodes=5, batch_size=5, metric="loss")
    with pytest.raises(ValueError, match="num_episodes=0"):
        fewjax.evaluate(scripted_eval, None, sampler, num_episodes=0)
    with pytest.raises(ValueError, match="memory_mb=0"):
        fewjax.evaluate(scripted_eval, None, sampler, num_episodes=5, memory_mb=0)


def test_batches_that_need_more_memory_than_allowed_are_made_smaller_with_the_same_result():
    rng = np.random.default_rng(0)
    source = ArraySource(rng.normal(size=(400, 16)).astype(np.float32), np.arange(400) % 40,
                         [str(i) for i in range(40)])
    wide = episodes(source, ways=20, shots=1, queries=5, seed=0)
    kernel = functools.partial(fewjax.protonet_loss, lambda w, x: jnp.tanh(x @ w), ways=20)
    eval_fn = jax.jit(lambda w, tasks: jax.vmap(lambda t: kernel(w, t)[1])(tasks))
    w = jnp.asarray(rng.normal(size=(16, 2048)).astype(np.float32))
    whole = fewjax.evaluate(eval_fn, w, wide, num_episodes=40, batch_size=40, memory_mb=1024)
    bounded = fewjax.evaluate(eval_fn, w, wide, num_episodes=40, batch_size=40, memory_mb=2)
    assert whole["batch_size"] == 40 and 1 <= bounded["batch_size"] < 40
    assert (bounded["accuracy"], bounded["std"]) == (whole["accuracy"], whole["std"])
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct((bounded["batch_size"],) + a.shape[1:], a.dtype),
                       wide.eval_set(1, seed=0))
    m = eval_fn.lower(w, one).compile().memory_analysis()
    planned = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    assert planned <= 2 * 2**20 or bounded["batch_size"] == 1
