"""The launchers as a user runs them: train.py / evaluate.py in subprocesses, signals, kill -9, bad flags."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from fewjax.train import train_and_evaluate
from fewjax.train.checkpoint import Checkpoints
from tests.train.conftest import sinusoid_config
from tests.train.test_loop import final_params
from tests.shared import SHARED

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None, check=True, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          **kw)
    if check and proc.returncode:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def sinusoid_args(workdir, **overrides):
    c = sinusoid_config(**overrides)
    flat = {k: c[k] for k in ("total_steps", "log_every", "eval_every", "checkpoint_every", "val_episodes",
                              "test_episodes", "eval_batch_size", "meta_batch_size", "inner_lr", "eval_inner_steps")}
    return ["train.py", "--config", "configs/sinusoid_maml.py:5shot", "--workdir", str(workdir),
            *[f"--config.{k}={v}" for k, v in flat.items()]]


@pytest.mark.skipif(not (SHARED / "data" / "omniglot").is_dir(), reason="needs ../shared/data/omniglot")
def test_omniglot_train_then_evaluate_end_to_end(tmp_path):
    env = {"FEWJAX_DATA_DIR": str(SHARED / "data" / "omniglot"), "FEWJAX_CACHE_DIR": str(tmp_path / "cache")}
    work = tmp_path / "run"
    train = run("train.py", "--config", "configs/omniglot_protonet.py:5w1s", "--workdir", str(work),
                "--config.ways=10", "--config.model.hidden=16", "--config.total_steps=4", "--config.eval_every=2",
                "--config.checkpoint_every=2", "--config.log_every=2", "--config.val_episodes=10",
                "--config.test_episodes=20", "--config.eval_batch_size=10", env=env)
    trained = json.loads(train.stdout.strip().splitlines()[-1])
    assert trained["episodes"] == 20 and trained["ways"] == 5 and 0.2 <= trained["accuracy"] <= 1.0
    evaluated = run("evaluate.py", "--workdir", str(work), "--episodes", "20", "--batch_size", "10", env=env)
    record = json.loads(evaluated.stdout.strip().splitlines()[-1])
    for key in ("method", "dataset", "ways", "shots", "queries", "episodes", "accuracy", "ci95", "seconds"):
        assert key in record
    assert record["accuracy"] == pytest.approx(trained["accuracy"])  # same checkpoint, same seeded episodes
    assert json.loads((work / "eval_test.json").read_text()) == record


def test_kill_9_mid_training_then_resume_equals_uninterrupted_run(tmp_path):
    total = 1200
    reference = sinusoid_config(total_steps=total, log_every=50, eval_every=total, checkpoint_every=50)
    train_and_evaluate(reference, tmp_path / "ref", progress=False)

    work = tmp_path / "killed"
    args = sinusoid_args(work, total_steps=total, log_every=50, eval_every=total, checkpoint_every=50)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in (work / "checkpoints").glob("[0-9]*") if p.name.isdigit()]
        if steps and max(steps) >= 100:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed; raise total"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run(*args)
    a, b = final_params(tmp_path / "ref", reference), final_params(work, reference)
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    work = tmp_path / "w"
    args = sinusoid_args(work, total_steps=100000, log_every=10, eval_every=100000, checkpoint_every=1000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    metrics = work / "metrics.jsonl"
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.05)  # a logged row: the training loop (and its signal handlers) is running
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    stopped = json.loads(out.strip().splitlines()[-1])["interrupted_at_step"]
    assert "SIGTERM received" in err
    with Checkpoints(work / "checkpoints", read_only=True) as ckpts:
        assert ckpts.latest_step() == stopped


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config.nonexistent=1"], "no key 'nonexistent'"),
        (["--config.model.hiden=3"], "Did you mean --config.model.hidden"),
        (["--config.total_steps=abc"], "config.total_steps=abc"),
        (["--config.method=mamal"], "config.method='mamal'"),
        (["--config.task_loop=loop"], "config.task_loop='loop': choose auto, vmap or scan"),
    ],
)
def test_bad_overrides_are_one_clear_error(extra, message, tmp_path):
    proc = run("train.py", "--config", "configs/sinusoid_maml.py", "--workdir", str(tmp_path / "w"), *extra,
               check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w").exists()


def test_unknown_preset_names_the_choices(tmp_path):
    proc = run("train.py", "--config", "configs/omniglot_maml.py:7w3s", "--workdir", str(tmp_path), check=False)
    assert proc.returncode != 0 and "unknown preset '7w3s'" in proc.stderr and "20w5s" in proc.stderr


def test_evaluate_without_checkpoints_is_a_clear_error(tmp_path):
    proc = run("evaluate.py", "--workdir", str(tmp_path / "nothing"), check=False)
    assert proc.returncode != 0 and "no checkpoints/ folder" in proc.stderr
