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


class Cut(Exception):
    pass


class CutAfter:
    """`sampler` whose evaluation stops with `Cut` after `batches` batches (what a signal does to a long test), and
    which counts the episodes it hands out."""

    def __init__(self, sampler, batches=None):
        self.sampler, self.batches, self.episodes = sampler, batches, 0

    def eval_batches(self, *args, **kwargs):
        for i, tasks in enumerate(self.sampler.eval_batches(*args, **kwargs)):
            if i == self.batches:
                raise Cut
            self.episodes += tasks.support.x.shape[0]
            yield tasks


def summary(result):
    return {k: result[k] for k in ("accuracy", "loss", "ci95", "std", "episodes") if k in result}


def test_an_evaluation_cut_short_continues_where_it_stopped_with_the_uninterrupted_result(sampler, tmp_path):
    whole = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=45, batch_size=10, seed=3)
    file = tmp_path / "progress.npz"
    with pytest.raises(Cut):
        fewjax.evaluate(scripted_eval, None, CutAfter(sampler, batches=2), num_episodes=45, batch_size=10, seed=3,
                        resume_file=file)
    rest = CutAfter(sampler)
    resumed = fewjax.evaluate(scripted_eval, None, rest, num_episodes=45, batch_size=10, seed=3, resume_file=file)
    assert resumed["resumed_episodes"] == 20 and rest.episodes == 25
    assert summary(resumed) == summary(whole)
    done = CutAfter(sampler, batches=0)  # everything is in the file: nothing is sampled or scored
    again = fewjax.evaluate(scripted_eval, None, done, num_episodes=45, batch_size=10, seed=3, resume_file=file)
    assert again["resumed_episodes"] == 45 and summary(again) == summary(whole)


def test_a_file_of_more_episodes_serves_fewer_and_one_of_fewer_is_extended(sampler, tmp_path):
    file = tmp_path / "progress.npz"
    first = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=20, batch_size=10, seed=3, resume_file=file)
    more = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=45, batch_size=7, seed=3, resume_file=file)
    fewer = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=20, batch_size=7, seed=3, resume_file=file)
    assert (more["resumed_episodes"], fewer["resumed_episodes"]) == (20, 20)
    assert summary(more) == summary(fewjax.evaluate(scripted_eval, None, sampler, num_episodes=45, seed=3))
    assert summary(fewer) == summary(first)


@pytest.mark.parametrize("change", [{"params": np.ones(3, np.float32)}, {"seed": 4}, {"resume_key": "b"},
                                    {"metric": "loss"}], ids=["params", "seed", "key", "metric"])
def test_a_file_of_another_evaluation_is_started_afresh(change, sampler, tmp_path):
    def eval_fn(params, tasks):
        return {**scripted_eval(params, tasks), "loss": tasks.query.x[:, 0, 0]}

    file = tmp_path / "progress.npz"
    first = {"params": np.zeros(3, np.float32), "seed": 3, "resume_key": "a", "metric": "accuracy"}
    fewjax.evaluate(eval_fn, sampler=sampler, num_episodes=20, resume_file=file, **first)
    other = {**first, **change}
    result = fewjax.evaluate(eval_fn, sampler=sampler, num_episodes=20, resume_file=file, **other)
    fresh = fewjax.evaluate(eval_fn, sampler=sampler, num_episodes=20, **other)
    assert result["resumed_episodes"] == 0 and summary(result) == summary(fresh)


def test_an_unreadable_file_is_a_warning_and_a_fresh_start(sampler, tmp_path, caplog):
    file = tmp_path / "progress.npz"
    file.write_bytes(b"not an npz")
    result = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=20, seed=3, resume_file=file)
    assert result["resumed_episodes"] == 0 and "cannot read" in caplog.text
    assert fewjax.evaluate(scripted_eval, None, sampler, num_episodes=20, seed=3,
                           resume_file=file)["resumed_episodes"] == 20


@pytest.mark.parametrize("now, served", [
    ({"a": 1, "new": 0}, True),  # a setting added since the file was written, left at its default
    ({"a": 1, "new": 5}, False),  # the added setting changed from its default
    ({"a": 2, "new": 0}, False),  # a setting the file knows, changed
    ({"new": 0}, False),  # a setting the file knows, gone
    ({"a": 1, "other": 0}, False),  # an added setting without a known default
])
def test_settings_added_since_a_file_was_written_count_at_their_default(now, served, sampler, tmp_path):
    file = tmp_path / "progress.npz"
    fewjax.evaluate(scripted_eval, None, sampler, num_episodes=20, seed=3, resume_file=file, resume_key={"a": 1})
    result = fewjax.evaluate(scripted_eval, None, sampler, num_episodes=20, seed=3, resume_file=file,
                             resume_key=now, resume_defaults={"a": 1, "new": 0})
    assert result["resumed_episodes"] == (20 if served else 0)


def test_a_file_keyed_on_the_config_as_one_json_string_serves_the_same_settings_as_a_mapping(sampler, tmp_path):
    import json

    file = tmp_path / "progress.npz"  # as files were written before keys were mappings (2026-12-04)
    fewjax.evaluate(scripted_eval, None, sampler, num_episodes=20, seed=3, resume_file=file,
                    resume_key=json.dumps({"lr": 0.5, "text": {"pooling": "mean"}}, sort_keys=True))
    same = {"lr": 0.5, "text.pooling": "mean", "new": (1, 2)}
    kw = dict(num_episodes=20, seed=3, resume_file=file, resume_defaults={"new": (1, 2)})
    assert fewjax.evaluate(scripted_eval, None, sampler, resume_key=same, **kw)["resumed_episodes"] == 20
    other = {**same, "text.pooling": "cls"}
    assert fewjax.evaluate(scripted_eval, None, sampler, resume_key=other, **kw)["resumed_episodes"] == 0
