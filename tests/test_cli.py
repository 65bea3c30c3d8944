"""The launchers as a user runs them: train.py / evaluate.py in subprocesses, signals, kill -9, bad flags."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from fewjax.train import train_and_evaluate
from fewjax.experiment.checkpoint import Checkpoints
from fewjax.experiment.data import make_sampler
from fewjax.experiment.state import outer_optimizer
from fewjax.methods import build_method
from fewjax.experiment.state import init_state
from tests.conftest import sinusoid_config, tiny_config
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


def test_sigterm_saves_a_checkpoint_and_exits_128_plus_15_and_a_second_run_is_refused(tmp_path):
    work = tmp_path / "w"
    args = sinusoid_args(work, total_steps=100000, log_every=10, eval_every=100000, checkpoint_every=1000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    metrics = work / "metrics.jsonl"
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.05)  # a logged row: the training loop (and its signal handlers) is running
    second = run(*args, check=False)  # the same command again while the first still trains
    assert second.returncode == 75, second.stderr[-2000:]
    assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    assert f"--workdir {work} is in use by process {proc.pid} on host {socket.gethostname()}" in second.stderr
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # not 0: a scheduler must not take it as done
    record = json.loads(out.strip().splitlines()[-1])
    assert record["signal"] == signal.SIGTERM
    assert "SIGTERM received: checkpoint of step" in err and "run the same command again to resume" in err
    with Checkpoints(work / "checkpoints", read_only=True) as ckpts:
        assert ckpts.latest_step() == record["interrupted_at_step"]
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer: no interleaved rows
    assert not (work / "fewjax.lock").exists()


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


def test_missing_config_file_is_one_error_line(tmp_path):
    proc = run("train.py", "--config", "configs/missing.py:5w1s", "--workdir", str(tmp_path / "w"), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "error: --config=configs/missing.py:5w1s: no such file 'configs/missing.py'" in proc.stderr


def test_workdir_naming_a_file_is_one_error_line(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = run(*sinusoid_args(tmp_path / "file"), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"--workdir={tmp_path / 'file'}: is an existing file, not a directory" in proc.stderr


DISK_FULL = """
import errno, os, runpy, sys
from orbax.checkpoint._src.path import async_path
original = async_path.write_text
async def write_text(path, text):  # the disk fills up during the save of step 20, once its arrays are written
    if str(path).endswith("/20.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/_METADATA"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return await original(path, text)
async_path.write_text = write_text
sys.argv = sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""


def test_full_disk_during_a_save_is_one_warning_and_one_error(tmp_path):
    args = sinusoid_args(tmp_path / "w", total_steps=40, log_every=10, eval_every=40, checkpoint_every=10)
    proc = run("-c", DISK_FULL, *args, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("No space left on device") == 2, proc.stderr
    assert "saving checkpoint step 20 in" in proc.stderr  # the warning (after the progress bar on its line)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: No space left on device while saving checkpoint step 20")
    assert "previous checkpoints are intact (complete steps: [10])" in last


@pytest.fixture(scope="module")
def image_checkpoint(image_root, tmp_path_factory):
    """An untrained MAML image checkpoint, saved without a validation metric (as total_steps=0 leaves it)."""
    work = tmp_path_factory.mktemp("image_checkpoint")
    config = tiny_config(image_root, "maml", total_steps=0)
    method = build_method(config)
    example = make_sampler(config, "train", seed=0).sample(0).support.x
    state = init_state(method.init(jax.random.key(0), example), outer_optimizer(config), ema=False)
    with Checkpoints(work / "checkpoints") as ckpts:
        ckpts.save(0, state, config=config.to_dict())
    return work


def evaluate_args(workdir, *extra):
    return ["evaluate.py", "--workdir", str(workdir), "--episodes", "6", "--batch_size", "3", *extra]


@pytest.mark.parametrize("extra, message", [
    (["--ways", "4"], "--ways=4: maml has a 3-way head: --ways must equal ways=3"),
    (["--shots", "10"], "have fewer examples than --shots + --queries = 10 + 2 (the smallest, "),
    (["--max_length", "64"], "--max_length is for text checkpoints; this one is an image model"),
    (["--text_column", "t"], "--text_column is for text checkpoints"),
    (["--invert", "true"], "--invert=true is for the image folder given with --data"),
    (["--split", "val", "--within_alphabet"], "--within_alphabet is Lake's test protocol"),
    (["--data", "DATA.csv"], "is a CSV file: text data, but this checkpoint is an image model"),
    (["--data", "DATA.csv", "--within_alphabet"], "has no alphabets: drop --within_alphabet, or drop --data"),
    (["--dataset", "fewrel"], "--dataset='fewrel': this is an image checkpoint (trained on 'image_folder')"),
])
def test_evaluate_errors_name_the_flags_typed(extra, message, image_checkpoint, tmp_path):
    (tmp_path / "DATA.csv").write_text("text,label\nhello,greeting\n")
    extra = [str(tmp_path / "DATA.csv") if e == "DATA.csv" else e for e in extra]
    proc = run(*evaluate_args(image_checkpoint, *extra), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert message in proc.stderr and "config.test_ways" not in proc.stderr and "does not exist" not in proc.stderr


def test_evaluate_notransductive_scores_each_query_with_the_support_set_alone(image_checkpoint, tmp_path):
    work = tmp_path / "run"  # a copy: evaluate.py writes eval_test.json, and the shared fixture must stay without one
    shutil.copytree(image_checkpoint, work)
    records = [json.loads(run(*evaluate_args(work, *flag)).stdout.strip().splitlines()[-1])
               for flag in ([], ["--notransductive"])]
    assert "transductive" not in records[0] and records[1]["transductive"] is False
    assert records[0]["episodes"] == records[1]["episodes"] == 6


def test_evaluate_on_a_read_only_workdir_prints_the_result_and_warns(image_checkpoint, tmp_path):
    """Also: `--checkpoint best` (the default) on a run without validation evaluates the latest and says so."""
    work = tmp_path / "ro"
    shutil.copytree(image_checkpoint, work)
    for p in [work, *work.rglob("*")]:
        p.chmod(p.stat().st_mode & 0o555)
    cmd = [sys.executable, *evaluate_args(work)]
    if os.geteuid() == 0:  # root ignores permission bits unless it drops the capabilities that let it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                              text=True, timeout=600)
    finally:
        for p in [work, *work.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["episodes"] == 6 and record["checkpoint"] == "latest" and record["step"] == 0
    assert "could not write" in proc.stderr and "eval_test.json" in proc.stderr
    assert not (work / "eval_test.json").exists()
