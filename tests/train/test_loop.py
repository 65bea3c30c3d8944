"""End-to-end: every method trains, checkpoints, resumes bit for bit, and evaluates; faults are clear errors."""
import json
import re
import shutil

import jax
import numpy as np
import pytest

from fewjax.train import train_and_evaluate
from fewjax.experiment.checkpoint import Checkpoints
from fewjax.experiment.config import METHODS
from fewjax.experiment.data import make_sampler
from fewjax.experiment.load import load
from fewjax.experiment.state import outer_optimizer
from fewjax.methods import build_method
from fewjax.experiment.state import init_state
from tests.conftest import sinusoid_config, tiny_config


def final_params(workdir, config):
    method = build_method(config)
    x = make_sampler(config, "train", seed=0).sample(0).support.x
    target = init_state(method.init(jax.random.key(0), x), outer_optimizer(config), ema=config.ema_decay > 0)
    with Checkpoints(workdir / "checkpoints", read_only=True) as ckpts:
        return ckpts.restore(target, step="latest")[0]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "finetune"])  # finetune: text only
def test_every_method_trains_checkpoints_and_evaluates(method, image_root, tmp_path):
    config = tiny_config(image_root, method, **PER_STEP.get(method, {}))
    record = train_and_evaluate(config, tmp_path, progress=False)
    assert record["method"] == method and record["episodes"] == 6
    assert 0.0 <= record["accuracy"] <= 1.0 and record["ci95"] >= 0.0
    assert json.loads((tmp_path / "eval_test.json").read_text()) == record
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r for r in rows) and any("val/val_accuracy" in r for r in rows)
    assert list((tmp_path / "tensorboard").iterdir())
    with Checkpoints(tmp_path / "checkpoints", read_only=True) as ckpts:
        assert ckpts.latest_step() == 4


PER_STEP = {"mamlpp": {"inner_steps": 2, "eval_inner_steps": 2}}  # MAML++ learns per-step weights: same steps
MAMLPP_SCHEDULE = {**PER_STEP["mamlpp"], "mamlpp.epoch_steps": 1, "mamlpp.msl_epochs": 3,
                   "mamlpp.first_order_epochs": 1}  # the multi-step loss and the derivative order change mid-run


@pytest.mark.parametrize("make", [
    lambda root: tiny_config(root, "maml"),
    lambda root: sinusoid_config(),
    pytest.param(lambda root: tiny_config(root, "reptile", inner_steps=3, inner_batch_size=3, inner_optimizer="adam",
                                          inner_lr=1e-3, inner_state="carried"),
                 id="reptile-minibatches-carried"),  # keys drawn from the step; the inner Adam state checkpointed
    pytest.param(lambda root: tiny_config(root, "imaml"), id="imaml", marks=pytest.mark.slow),  # custom-VJP meta-gradient
    pytest.param(lambda root: tiny_config(root, "mamlpp", **MAMLPP_SCHEDULE), id="mamlpp",
                 marks=pytest.mark.slow),  # compiles both derivative orders, three times
])
def test_resumed_run_equals_uninterrupted_run_bit_for_bit(make, image_root, tmp_path):
    straight, resumed = make(image_root), make(image_root)
    train_and_evaluate(straight, tmp_path / "a", progress=False)
    first = make(image_root)
    first.total_steps = first.checkpoint_every  # stop half way, then start again in the same workdir
    train_and_evaluate(first, tmp_path / "b", progress=False)
    train_and_evaluate(resumed, tmp_path / "b", progress=False)
    a, b = final_params(tmp_path / "a", straight), final_params(tmp_path / "b", resumed)
    assert int(a.step) == int(b.step) == straight.total_steps
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_ema_is_tracked_and_validated(image_root, tmp_path):
    train_and_evaluate(tiny_config(image_root, "protonet", ema_decay=0.5), tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("val/val_ema_accuracy" in r for r in rows)
    state = final_params(tmp_path, tiny_config(image_root, "protonet", ema_decay=0.5))
    averaged = load(tmp_path, "latest", ema=True).params
    for x, y in zip(jax.tree.leaves(averaged), jax.tree.leaves(state.ema_params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_evaluating_the_moving_average_of_a_run_that_kept_none_is_an_error(image_root, tmp_path):
    train_and_evaluate(tiny_config(image_root, "protonet", total_steps=2, eval_every=2, checkpoint_every=2), tmp_path,
                       progress=False)
    assert load(tmp_path, "latest").step == 2
    with pytest.raises(ValueError, match=r"--ema\): this run kept no moving average .*\(config.ema_decay=0"):
        load(tmp_path, "latest", ema=True)


@pytest.mark.parametrize("checkpoint_every", [1, 60])
def test_non_finite_loss_stops_with_the_step_and_keeps_good_checkpoints(checkpoint_every, tmp_path):
    config = sinusoid_config(total_steps=60, log_every=1, checkpoint_every=checkpoint_every, eval_every=60)
    config.optim.name, config.optim.lr = "sgd", 50.0  # diverges within a few steps
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step (\d+)") as info:
        train_and_evaluate(config, tmp_path, progress=False)
    bad = int(re.search(r"step (\d+)", str(info.value)).group(1))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, bad))  # one numbering: the bad step is the next row's
    with Checkpoints(tmp_path / "checkpoints", read_only=True) as ckpts:
        kept = ckpts.latest_step()
    if checkpoint_every == 1:
        assert kept == bad - 1 and f"the checkpoint of step {kept} is kept" in str(info.value)
        state = final_params(tmp_path, config)
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state.params))
    else:
        assert kept is None and "no checkpoint was saved before it" in str(info.value)


def test_resume_drops_the_rows_logged_after_the_restored_checkpoint(tmp_path):
    config = sinusoid_config(total_steps=6, log_every=1, checkpoint_every=3, eval_every=3)
    train_and_evaluate(config, tmp_path, progress=False)
    expected = (tmp_path / "metrics.jsonl").read_text()
    # What kill -9 during the save of step 6 leaves: rows up to 6 (and a row cut short), no checkpoint 6.
    shutil.rmtree(tmp_path / "checkpoints" / "6")
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "train/lo')
    train_and_evaluate(config, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [(r["step"], "train/loss" in r) for r in rows]
    assert sorted(steps) == sorted(set(steps)) and [s for s, train in steps if train] == list(range(1, 7))
    assert (tmp_path / "metrics.jsonl").read_text() == expected  # the same rows as the uninterrupted run
    assert not list(tmp_path.glob(".metrics.jsonl.tmp-*"))


def test_a_final_test_cut_short_continues_with_the_uninterrupted_result(tmp_path):
    config = sinusoid_config(test_episodes=12, eval_batch_size=4)
    whole = train_and_evaluate(config, tmp_path, progress=False)
    progress = tmp_path / "test_progress.npz"
    with np.load(progress) as f:  # what a signal after the first batch leaves
        saved = dict(f)
    np.savez(progress, **{**saved, "values": saved["values"][:4]})
    resumed = train_and_evaluate(config, tmp_path, progress=False)
    assert (whole["resumed_episodes"], resumed["resumed_episodes"]) == (0, 4)
    assert {k: resumed[k] for k in ("loss", "ci95", "episodes")} == {k: whole[k] for k in ("loss", "ci95", "episodes")}
    other = sinusoid_config(test_episodes=12, eval_batch_size=4, test_queries=3)  # another test: scored afresh
    assert train_and_evaluate(other, tmp_path, progress=False)["resumed_episodes"] == 0


def test_an_existing_file_as_workdir_names_the_flag(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"--workdir .*file is an existing file"):
        train_and_evaluate(sinusoid_config(), tmp_path / "file", progress=False)


def test_workdir_of_another_configuration_is_refused(image_root, tmp_path):
    train_and_evaluate(tiny_config(image_root, "protonet"), tmp_path, progress=False)
    with pytest.raises(ValueError, match="holds checkpoints of another configuration.*method"):
        train_and_evaluate(tiny_config(image_root, "matching"), tmp_path, progress=False)


def test_a_longer_run_of_a_decaying_schedule_is_refused(tmp_path):
    train_and_evaluate(sinusoid_config(**{"optim.schedule": "cosine", "total_steps": 3}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="another configuration.*total_steps: saved 3, now 6"):
        train_and_evaluate(sinusoid_config(**{"optim.schedule": "cosine"}), tmp_path, progress=False)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method": "mamal"}, "config.method='mamal'"),
        ({"meta_batch_size": 0}, "config.meta_batch_size=0"),
        ({"test_ways": 5}, "test_ways must equal ways"),
        ({"steps_per_call": 3}, "steps_per_call"),
        ({"optim.schedule": "exp"}, "optim.schedule"),
    ],
)
def test_bad_config_values_fail_before_anything_runs(overrides, message, image_root, tmp_path):
    overrides = dict(overrides)
    method = overrides.pop("method", "maml" if "test_ways" in overrides else "protonet")
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(tiny_config(image_root, method, **overrides), tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_missing_image_folder_is_a_clear_error(tmp_path):
    from fewjax.experiment.config import base_config

    c = base_config()
    c.dataset, c.data_dir = "image_folder", str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train_and_evaluate(c, tmp_path / "w", progress=False)


def test_early_stopping_stops_after_patience_and_a_rerun_does_not_train_again(image_root, tmp_path):
    # lr 0: validation never improves after its first value, so the run stops `patience` validations later.
    config = tiny_config(image_root, "protonet", total_steps=20, early_stop_patience=1, **{"optim.lr": 0.0})
    train_and_evaluate(config, tmp_path, progress=False)
    with Checkpoints(tmp_path / "checkpoints", read_only=True) as ckpts:
        assert ckpts.latest_step() == 4
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    record = train_and_evaluate(config, tmp_path, progress=False)  # same command again: nothing left to train
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == rows
    assert record["step"] == 4  # ties: the latest of the equally good checkpoints
