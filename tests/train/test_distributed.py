"""Many processes give the results of one: `jax.distributed` over local CPU processes on 127.0.0.1 (gloo).

Each run starts its processes as subprocesses of a small driver (below) that calls
`fewjax.cli.distributed.initialize_distributed` with the flags train.py passes, then `train_and_evaluate`.
All processes share one workdir, as they would share a file system on a cluster.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.train.test_multidevice import REPO, assert_same_training, final_state, multi_config
from tests.train.test_partitioning import assert_partitioned

DRIVER = """
import json, sys, types
address, nproc, pid, workdir, total, host = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6] == "host"
from fewjax.cli.distributed import initialize_distributed
initialize_distributed(types.SimpleNamespace(coordinator_address=address if nproc > 1 else None,
                                             num_processes=nproc if nproc > 1 else None,
                                             process_id=pid if nproc > 1 else None, distributed=False))
import jax
assert jax.process_count() == nproc and jax.process_index() == pid
if host:  # the host sampling path: every process samples only its slice of the meta-batch
    from fewjax.data.sinusoid import SinusoidSampler
    SinusoidSampler.fits_on_device = False
from fewjax.train import train_and_evaluate
from tests.train.test_multidevice import multi_config
config = multi_config(None, "maml", total_steps=total, log_every=2, eval_every=5, checkpoint_every=5)
print("RESULT" + json.dumps(train_and_evaluate(config, workdir, progress=False)))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COST_DRIVER = """
import json, sys
import jax
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=int(sys.argv[2]), process_id=int(sys.argv[3]))
from tests.train.test_partitioning import program_costs
print("RESULT" + json.dumps(program_costs("maml", "scan", "matmul", (1, jax.device_count()))))
"""


def launch(workdir: Path, *, processes: int, devices: int = 1, total_steps: int = 10, host: bool = False,
           timeout: int = 180, driver: str = DRIVER) -> list[dict]:
    """Runs `driver` in `processes` processes of `devices` fake CPU devices each; returns their results."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    address = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([sys.executable, "-c", driver, address, str(processes), str(i), str(workdir),
                               str(total_steps), "host" if host else "device"],
                              env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(processes)]
    outputs = []
    try:
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"process {i} of {processes} failed:\n{out}\n{err[-4000:]}"
            outputs.append(json.loads(out.split("RESULT", 1)[1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outputs


def metric_rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A single-process and a two-process run of 10 steps (MAML on sinusoids, meta-batch 8)."""
    out = tmp_path_factory.mktemp("distributed")
    return out, launch(out / "one", processes=1), launch(out / "two", processes=2)


def test_two_processes_train_like_one(runs):
    out, one, two = runs
    config = multi_config(None, "maml", total_steps=10)
    assert_same_training(out / "one", out / "two", config)  # also: the 2-process checkpoint restores in one
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert drop(two[0]) == drop(two[1])  # every process returns the same evaluation
    np.testing.assert_allclose(two[0]["loss"], one[0]["loss"], rtol=1e-4)
    assert two[0]["episodes"] == one[0]["episodes"] == 10


def test_only_process_zero_writes_metrics_and_evaluations(runs):
    out, one, two = runs
    rows = metric_rows(out / "two")
    keys = [(r["step"], tuple(sorted(r))) for r in rows]
    assert len(keys) == len(set(keys)) > 0  # a second writer would duplicate every row
    assert [k for k in keys] == [(r["step"], tuple(sorted(r))) for r in metric_rows(out / "one")]
    assert json.loads((out / "two" / "eval_test.json").read_text())["loss"] == two[0]["loss"]
    assert len(list((out / "two" / "tensorboard").iterdir())) == 1
    assert not list((out / "two").glob(".eval_test.json.tmp-*"))


@pytest.mark.slow
def test_checkpoints_move_between_one_and_two_processes(runs, tmp_path):
    """Step 10 written by two processes resumes in one, and written by one resumes in two; both reach step 12 alike."""
    out, _, _ = runs
    shutil.copytree(out / "two", tmp_path / "two_then_one")
    shutil.copytree(out / "one", tmp_path / "one_then_two")
    launch(tmp_path / "two_then_one", processes=1, total_steps=12)
    launch(tmp_path / "one_then_two", processes=2, total_steps=12)
    config = multi_config(None, "maml", total_steps=12)
    assert_same_training(tmp_path / "two_then_one", tmp_path / "one_then_two", config)
    steps = [r["step"] for r in metric_rows(tmp_path / "one_then_two") if "train/loss" in r]
    assert steps[-1] == 12 and steps.count(12) == 1


@pytest.mark.slow
def test_host_sampling_two_processes_of_two_devices_train_like_one(runs, tmp_path):
    """The host path: each of 2 processes samples only its 4 tasks of 8 and places them on its 2 devices."""
    out, _, _ = runs
    launch(tmp_path / "host", processes=2, devices=2, host=True)
    launch(tmp_path / "host_one", processes=1, devices=1, host=True)
    config = multi_config(None, "maml", total_steps=10)
    assert_same_training(tmp_path / "host_one", tmp_path / "host", config)
    # host and device sampling draw different tasks: the runs differ (the test is not vacuous)
    a, b = final_state(tmp_path / "host_one", config), final_state(out / "one", config)
    assert not all(np.allclose(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a.params),
                                                                             jax.tree.leaves(b.params)))


def test_two_processes_each_do_half_the_work_and_exchange_only_gradients(tmp_path):
    """The MAML step and evaluation compiled by 2 processes of 1 device: per device, half the one-device FLOPs;
    between the processes, one all-reduce of the gradients per step and nothing during evaluation."""
    for costs in launch(tmp_path, processes=2, timeout=900, driver=COST_DRIVER):
        for kind in ("train", "eval"):
            assert_partitioned(costs, kind, param_bytes=costs["param_bytes"], device_counts=(2,))
