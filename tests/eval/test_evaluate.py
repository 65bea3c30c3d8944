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
