"""kill -9 at any moment of a run, then the same command again: the result is the uninterrupted run's, bit for bit.

A tiny ProtoNet run on a generated image folder is killed (SIGKILL) inside a checkpoint save and at random moments
(by progress, plus a random delay, so some kills land in saves, validation or logging), resumed each time, and
finished. Its final parameters and optimiser state must equal an uninterrupted run's bit for bit, and its
metrics.jsonl must be the uninterrupted run's file: every step exactly once, the same values.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from fewjax.train import train_and_evaluate
from tests.conftest import tiny_config
from tests.train.test_loop import final_params

REPO = Path(__file__).resolve().parents[2]
RUN = {"total_steps": 12, "log_every": 1, "eval_every": 4, "checkpoint_every": 2, "test_episodes": 3}

DRIVER = """
import json, os, signal, sys
from orbax.checkpoint._src.path import async_path
root, workdir, die_in_save = sys.argv[1], sys.argv[2], sys.argv[3]
original = async_path.write_text
async def write_text(path, text):
    if f"/{die_in_save}.orbax-checkpoint-tmp/" in str(path):  # in the middle of that step's save
        os.kill(os.getpid(), signal.SIGKILL)
    return await original(path, text)
async_path.write_text = write_text
from fewjax.train import train_and_evaluate
from tests.conftest import tiny_config
train_and_evaluate(tiny_config(root, "protonet", **json.loads(sys.argv[4])), workdir, progress=False)
"""


def start(image_root, workdir: Path, *, die_in_save: int = -1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(image_root), str(workdir), str(die_in_save),
                             json.dumps(RUN)], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rows(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def kill_at(proc: subprocess.Popen, workdir: Path, target_rows: int, delay: float) -> int:
    """SIGKILL once metrics.jsonl has `target_rows` rows and `delay` more seconds have passed; the exit status."""
    deadline = time.time() + 300
    while proc.poll() is None and rows(workdir) < target_rows and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.kill()
    return proc.wait(60)


@pytest.fixture(scope="module")
def uninterrupted(image_root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    train_and_evaluate(tiny_config(image_root, "protonet", **RUN), workdir, progress=False)
    return workdir


def finish_and_compare(image_root, workdir: Path, reference: Path) -> None:
    config = tiny_config(image_root, "protonet", **RUN)
    with pytest.warns(RuntimeWarning, match="took over the lock"):  # the killed run's lock: its pid is gone
        train_and_evaluate(config, workdir, progress=False)
    a, b = final_params(reference, config), final_params(workdir, config)
    assert int(a.step) == int(b.step) == RUN["total_steps"]
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    logged = map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
    steps = [r["step"] for r in logged if "train/loss" in r]
    assert steps == list(range(1, RUN["total_steps"] + 1))
    assert json.loads((workdir / "eval_test.json").read_text())["accuracy"] == \
        json.loads((reference / "eval_test.json").read_text())["accuracy"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_kill_9_inside_a_save_then_resume_equals_the_uninterrupted_run(image_root, uninterrupted, tmp_path):
    proc = start(image_root, tmp_path, die_in_save=6)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -9, err.decode()[-3000:]
    assert (tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp").is_dir() and rows(tmp_path) >= 6
    finish_and_compare(image_root, tmp_path, uninterrupted)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("seed", [0, 1])
def test_kill_9_at_random_moments_then_resume_equals_the_uninterrupted_run(seed, image_root, uninterrupted, tmp_path):
    rng = np.random.default_rng(seed)
    proc = start(image_root, tmp_path, die_in_save=int(rng.choice([2, 4, 8])))
    proc.wait(600)
    later = np.arange(rows(tmp_path) + 1, 13)  # of 15 rows; a first death late in the run leaves fewer than 3
    for target in sorted(rng.choice(later, size=min(3, later.size), replace=False)):
        assert kill_at(start(image_root, tmp_path), tmp_path, int(target), float(rng.uniform(0.0, 0.4))) == -9
    finish_and_compare(image_root, tmp_path, uninterrupted)
