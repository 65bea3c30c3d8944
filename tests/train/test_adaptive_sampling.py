"""Adaptive task sampling through the trainer: the step's per-task gradient, bit-exact resume, the config switch."""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax
from fewjax.experiment.checkpoint import Checkpoints
from fewjax.experiment.config import base_config
from fewjax.experiment.data import make_sampler
from fewjax.experiment.state import init_state, outer_optimizer
from fewjax.methods import build_method, resolve_platform
from fewjax.train import train_and_evaluate
from fewjax.train.step import per_task_meta_grad
from tests.conftest import sinusoid_config, tiny_config
from tests.shared import TEXT_READY, text_config
from tests.train.test_multidevice import multi_config, run_in_subprocess

ADAPTIVE = {"task_sampling": "adaptive", "task_sampling_temperature": 0.5}


def final_state(workdir, config):
    """The latest checkpoint, restored as the loop restores it (with the difficulty estimate when adaptive)."""
    method = build_method(config)
    sampler = make_sampler(config, "train", seed=0)
    classes = sampler.source.num_classes if config.task_sampling == "adaptive" else None
    target = init_state(method.init(jax.random.key(0), sampler.sample(0).support.x), outer_optimizer(config),
                        ema=False, task_classes=classes)
    with Checkpoints(workdir / "checkpoints", read_only=True) as ckpts:
        return ckpts.restore(target, step="latest")[0]


PROTONET_AND_MAML = ["protonet", pytest.param("maml", marks=pytest.mark.slow)]  # CPU: tasks vmapped / scanned
REPTILE_MINIBATCHES = {"inner_steps": 3, "inner_batch_size": 3, "inner_optimizer": "adam", "inner_lr": 1e-3}


@pytest.mark.parametrize("method, overrides", [
    ("protonet", {}), pytest.param("maml", {}, marks=pytest.mark.slow),
    pytest.param("reptile", REPTILE_MINIBATCHES, id="reptile-minibatches")])  # each task its own mini-batch key
def test_per_task_meta_grad_equals_the_methods_mean_gradient(method, overrides, image_root):
    config = resolve_platform(tiny_config(image_root, method, meta_batch_size=4, **overrides))
    built, sampler = build_method(config), make_sampler(config, "train", seed=0)
    tasks = sampler.sample_batch(3, 4)
    params = built.init(jax.random.key(0), tasks.support.x[0])
    grads, metrics = built.meta_grad(params, tasks, 3)
    mine, per_task = jax.jit(per_task_meta_grad(built, task_loop=config.task_loop))(params, tasks, 3)
    assert per_task["loss"].shape == (4,) and len(set(np.asarray(per_task["loss"]).tolist())) == 4
    np.testing.assert_allclose(np.mean(per_task["loss"]), metrics["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_uniform_is_the_default_and_its_state_and_checkpoints_hold_no_estimate(image_root, tmp_path):
    assert base_config().task_sampling == "uniform"
    config = tiny_config(image_root, "protonet")
    train_and_evaluate(config, tmp_path, progress=False)
    state = final_state(tmp_path, config)  # restores into the target of before (no task_classes)
    assert state.sampling is None
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert not any("train/sampling_effective_classes" in r for r in rows)


@pytest.mark.parametrize("method", PROTONET_AND_MAML)
def test_adaptive_resume_equals_uninterrupted_run_bit_for_bit(method, image_root, tmp_path):
    make = lambda: tiny_config(image_root, method, **ADAPTIVE)  # noqa: E731
    straight = make()
    train_and_evaluate(straight, tmp_path / "a", progress=False)
    first = make()
    first.total_steps = first.checkpoint_every  # stop half way, then start again in the same workdir
    train_and_evaluate(first, tmp_path / "b", progress=False)
    train_and_evaluate(make(), tmp_path / "b", progress=False)
    a, b = final_state(tmp_path / "a", straight), final_state(tmp_path / "b", straight)
    assert int(a.step) == int(b.step) == straight.total_steps
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state, a.sampling)),
                    jax.tree.leaves((b.params, b.opt_state, b.sampling))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # 4 steps of 2 tasks of 3 ways: the classes drawn have an estimate, weights are no longer uniform
    num_classes = make_sampler(straight, "train", seed=0).source.num_classes
    assert 0 < int(jnp.sum(a.sampling.seen > 0)) <= min(num_classes, 4 * 2 * 3)
    assert float(jnp.max(a.sampling.loss)) > 0
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    effective = [r["train/sampling_effective_classes"] for r in rows if "train/sampling_effective_classes" in r]
    assert effective and all(0 < e < num_classes for e in effective)


def test_an_adaptive_run_loads_and_predicts(image_root, tmp_path):
    config = tiny_config(image_root, "protonet", **ADAPTIVE)
    train_and_evaluate(config, tmp_path, progress=False)
    run = fewjax.load(tmp_path)
    task = make_sampler(config, "test", seed=1).sample(0)
    assert np.asarray(run.predict((task.support.x, task.support.y), task.query.x)).shape[0] == task.query.x.shape[0]


def test_switching_sampling_mid_run_is_another_configuration(image_root, tmp_path):
    train_and_evaluate(tiny_config(image_root, "protonet", total_steps=2), tmp_path, progress=False)
    with pytest.raises(ValueError, match="another configuration.*task_sampling: saved 'uniform', now 'adaptive'"):
        train_and_evaluate(tiny_config(image_root, "protonet", **ADAPTIVE), tmp_path, progress=False)


@pytest.mark.parametrize("make, message", [
    (lambda root: sinusoid_config(task_sampling="adaptive"), "config.task_sampling='adaptive': sinusoid regression"),
    (lambda root: tiny_config(root, "protonet", task_sampling="adaptve"), "config.task_sampling='adaptve'"),
    (lambda root: tiny_config(root, "protonet", task_sampling="adaptive", task_sampling_floor=2.0),
     "config.task_sampling_floor=2.0"),
    (lambda root: tiny_config(root, "protonet", task_sampling="adaptive", task_sampling_temperature=0.0),
     "config.task_sampling_temperature=0.0"),
])
def test_where_adaptive_sampling_cannot_apply_one_error_names_the_key(make, message, image_root, tmp_path):
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(make(image_root), tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_a_split_sampled_on_the_host_is_a_clear_error(image_root, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules["fewjax.data.episodes"], "DEVICE_BYTES_LIMIT", 0)
    with pytest.raises(ValueError, match="task_sampling='adaptive'.*too large to sample on the device.*uniform"):
        train_and_evaluate(tiny_config(image_root, "protonet", **ADAPTIVE), tmp_path, progress=False)




@pytest.mark.slow  # a 1-layer MiniLM: compiles for about a minute on a CPU
@pytest.mark.skipif(not TEXT_READY, reason="shared MiniLM model / text data not found")
def test_a_text_method_trains_with_adaptive_sampling(tmp_path):
    config = text_config("protonet", **ADAPTIVE)
    record = train_and_evaluate(config, tmp_path, progress=False)
    assert record["method"] == "protonet" and record["accuracy"] > 0.5
    state = final_state(tmp_path, config)
    assert int(jnp.sum(state.sampling.seen > 0)) > 0  # CLINC150's 50 training intents, some drawn and scored


@pytest.mark.skipif(not TEXT_READY, reason="shared MiniLM model / text data not found")
def test_finetune_has_no_training_tasks_to_sample(tmp_path):
    with pytest.raises(ValueError, match="config.task_sampling='adaptive': finetune has no meta-training"):
        train_and_evaluate(text_config("finetune", total_steps=0, **ADAPTIVE), tmp_path / "w", progress=False)


@pytest.mark.slow  # two subprocesses, each compiling the step
def test_four_devices_sample_and_estimate_like_one(image_root, tmp_path):
    """Each device draws its own tasks; the estimate's update sums every device's observations."""
    overrides = {**ADAPTIVE, "total_steps": 4}
    for devices in (1, 4):
        run_in_subprocess(f"""
import jax
assert jax.device_count() == {devices}
from fewjax.train import train_and_evaluate
from tests.train.test_multidevice import multi_config
train_and_evaluate(multi_config({str(image_root)!r}, "protonet", **{overrides!r}), {str(tmp_path / f"d{devices}")!r},
                   progress=False)
""", devices=devices)
    config = multi_config(image_root, "protonet", **overrides)
    one, four = final_state(tmp_path / "d1", config), final_state(tmp_path / "d4", config)
    np.testing.assert_array_equal(np.asarray(one.sampling.seen), np.asarray(four.sampling.seen))
    np.testing.assert_allclose(np.asarray(one.sampling.loss), np.asarray(four.sampling.loss), rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)
