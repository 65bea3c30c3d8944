"""Many devices give the results of one: training and evaluation on 8 fake CPU devices against 1 device.

The device count of a JAX process is fixed when JAX starts, so each run happens in a subprocess started with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`; the test process compares the checkpoints they leave.

MAML and Reptile run on sinusoid regression (an MLP compiles in seconds), prototypical networks on generated
28x28 images with conv4. Conv4's convolution biases sit right before batch norm, which cancels them: their
gradients are float32 rounding noise (~1e-8), and Adam divides by sqrt(v), turning that noise into steps of +-lr
whose signs depend on the summation order. The image run therefore uses SGD, which keeps float32 differences
float32-sized; the MLP runs keep Adam.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from fewjax.experiment.checkpoint import Checkpoints
from fewjax.experiment.data import make_sampler
from fewjax.experiment.state import outer_optimizer
from fewjax.methods import build_method
from fewjax.experiment.state import init_state
from tests.conftest import sinusoid_config, tiny_config

REPO = Path(__file__).resolve().parents[2]
METHODS = ("maml", "reptile", "protonet")


def multi_config(image_root, method, **overrides):
    """A meta-batch of 8 (one task per fake device) and evaluation batches of 5, which do not divide 8."""
    base = dict(meta_batch_size=8, total_steps=4, log_every=2, eval_every=2, checkpoint_every=2, val_episodes=6,
                test_episodes=10, eval_batch_size=5)
    if method == "reptile":  # inner mini-batches: each task's key comes from its place in the whole meta-batch
        base.update(inner_batch_size=5, inner_steps=2)
    if method in ("maml", "reptile"):
        return sinusoid_config(method=method, **{**base, **overrides})
    config = tiny_config(image_root, method, **{**base, **overrides})
    config.optim.name, config.optim.lr = "sgd", 0.1
    return config


def run_in_subprocess(code: str, *, devices: int, timeout: int = 300) -> str:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed ({devices} devices):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


def train_runs(image_root, out: Path, *, devices: int, overrides: dict) -> dict:
    """Trains METHODS in `out/<method>` on `devices` fake devices; returns {method: eval record}."""
    code = f"""
import json, jax
assert jax.device_count() == {devices}, jax.devices()
from fewjax.train import train_and_evaluate
from tests.train.test_multidevice import METHODS, multi_config
records = {{m: train_and_evaluate(multi_config({str(image_root)!r}, m, **{overrides!r}), {str(out)!r} + "/" + m,
                                 progress=False) for m in METHODS}}
print("RESULT" + json.dumps(records))
"""
    stdout = run_in_subprocess(code, devices=devices)
    return json.loads(stdout.split("RESULT", 1)[1])


def final_state(workdir: Path, config):
    method = build_method(config)
    x = make_sampler(config, "train", seed=0).sample(0).support.x
    target = init_state(method.init(jax.random.key(0), x), outer_optimizer(config), ema=False)
    with Checkpoints(workdir / "checkpoints", read_only=True) as ckpts:
        return ckpts.restore(target, step=ckpts.latest_step())[0]


def train_losses(workdir: Path) -> list[float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in rows if "train/loss" in r]


def assert_same_training(one: Path, many: Path, config):
    a, b = final_state(one, config), final_state(many, config)
    assert int(a.step) == int(b.step) == config.total_steps
    leaves_a, leaves_b = jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-4, atol=1e-5)
    initial = jax.tree.leaves(build_method(config).init(
        jax.random.key(config.seed), make_sampler(config, "train", seed=config.seed).sample(0).support.x))
    assert any(not np.allclose(np.asarray(p), np.asarray(q)) for p, q in zip(jax.tree.leaves(a.params), initial))
    np.testing.assert_allclose(train_losses(many), train_losses(one), rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def runs(image_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("multidevice")
    return out, {n: train_runs(image_root, out / f"d{n}", devices=n, overrides={}) for n in (1, 8)}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_eight_devices_train_like_one(method, runs, image_root):
    out, records = runs
    assert_same_training(out / "d1" / method, out / "d8" / method, multi_config(image_root, method))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_eight_devices_evaluate_like_one(method, runs):
    _, records = runs
    one, many = records[1][method], records[8][method]
    assert one["episodes"] == many["episodes"] == 10
    assert many["step"] == one["step"]
    metric = "loss" if method in ("maml", "reptile") else "accuracy"
    np.testing.assert_allclose(many[metric], one[metric], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(many["ci95"], one["ci95"], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_fsdp_sharded_run_trains_like_replicated(image_root, tmp_path):
    """fsdp=4 over 8 devices (a (2, 4) mesh), every leaf of >= 32 elements split, against 1 device (MAML, Adam)."""
    code = f"""
import jax, fewjax.placement as sh
sh.MIN_SHARDED_SIZE = 32
from fewjax.train import train_and_evaluate
from tests.train.test_multidevice import multi_config
seen = []
original = sh.state_shardings
def spy(tree, mesh, **kw):
    out = original(tree, mesh, **kw)
    seen.extend(s.spec for s in jax.tree.leaves(out))
    return out
import fewjax.train.loop as loop
loop.state_shardings = spy
train_and_evaluate(multi_config(None, "maml", fsdp=4), {str(tmp_path / "fsdp")!r}, progress=False)
print("SHARDED", sum("fsdp" in str(s) for s in seen))
"""
    stdout = run_in_subprocess(code, devices=8)
    # the MLP's 3 kernels and 2 hidden biases (40 or 1600 elements) with Adam's two moments; not the [1] bias
    assert int(stdout.split("SHARDED", 1)[1]) == 15
    one = f"""
from fewjax.train import train_and_evaluate
from tests.train.test_multidevice import multi_config
train_and_evaluate(multi_config(None, "maml"), {str(tmp_path / "one")!r}, progress=False)
"""
    run_in_subprocess(one, devices=1)
    assert_same_training(tmp_path / "one", tmp_path / "fsdp", multi_config(None, "maml"))


def test_meta_batch_not_divisible_by_devices_is_a_clear_error(image_root, tmp_path):
    code = f"""
from fewjax.train import train_and_evaluate
from tests.train.test_multidevice import multi_config
try:
    train_and_evaluate(multi_config({str(image_root)!r}, "protonet", meta_batch_size=6), {str(tmp_path)!r},
                       progress=False)
except ValueError as e:
    print("ERROR", e)
"""
    stdout = run_in_subprocess(code, devices=4)
    assert "ERROR config.meta_batch_size=6 must be divisible by the 4 devices" in stdout
    assert "multiple of 4" in stdout


def test_leaf_spec_splits_the_largest_divisible_axis_of_large_leaves():
    from jax.sharding import PartitionSpec as P

    from fewjax.placement import leaf_spec

    assert leaf_spec((3, 3, 64, 128), 4, min_size=1) == P(None, None, None, "fsdp")
    assert leaf_spec((30522, 384), 4, min_size=1) == P(None, "fsdp")  # 30522 is not divisible by 4
    assert leaf_spec((512, 512), 4, min_size=1) == P("fsdp")  # ties: the first
    assert leaf_spec((7, 5), 4, min_size=1) == P()  # nothing divisible
    assert leaf_spec((2, 2), 4, min_size=1) == P()
    assert leaf_spec((1024, 1024), 4, min_size=2**21) == P()  # too small to be worth it
    assert leaf_spec((1024, 1024), 1, min_size=1) == P()  # fsdp=1
    assert leaf_spec((), 4, min_size=0) == P()  # scalars (step counters)


def test_fsdp_that_does_not_divide_the_devices_is_a_clear_error():
    from fewjax.placement import make_mesh

    n = jax.device_count()
    with pytest.raises(ValueError, match=rf"config.fsdp={n + 1} must be a positive divisor of the {n} devices"):
        make_mesh(fsdp=n + 1)
    with pytest.raises(ValueError, match="config.fsdp=0"):
        make_mesh(fsdp=0)
    assert make_mesh().shape == {"tasks": n, "fsdp": 1}


def test_state_shardings_and_process_slices_on_eight_devices():
    code = """
import jax, jax.numpy as jnp, numpy as np, optax
from fewjax.placement import make_mesh, process_task_indices, shard_local_tasks, state_shardings, fetch
mesh = make_mesh(fsdp=4)
assert mesh.shape == {"tasks": 2, "fsdp": 4}, mesh.shape
params = {"embed": jnp.ones((1000, 384)), "bias": jnp.ones(384), "odd": jnp.ones((1001, 3))}
tx = optax.adam(1e-3)
state = {"params": params, "opt": tx.init(params), "step": jnp.int32(0), "ema": None}
sh = state_shardings(state, mesh, min_size=1000)
from jax.sharding import PartitionSpec as P
assert sh["params"]["embed"].spec == sh["opt"][0].mu["embed"].spec == P("fsdp"), sh["params"]["embed"]
assert sh["params"]["bias"].spec == P() and sh["params"]["odd"].spec == P() and sh["ema"] is None
assert sh["step"].spec == sh["opt"][0].count.spec == P()
placed = jax.device_put(state, sh)
assert placed["params"]["embed"].addressable_shards[0].data.shape == (250, 384)
assert list(process_task_indices(mesh, 16)) == list(range(16))
x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
g = shard_local_tasks({"x": x}, mesh, meta_batch_size=16)["x"]
assert g.addressable_shards[0].data.shape == (2, 3)
np.testing.assert_array_equal(fetch(g), x)
try:
    process_task_indices(mesh, 12)
except ValueError as e:
    print("ERROR", e)
"""
    stdout = run_in_subprocess(code, devices=8)
    assert "ERROR meta_batch_size=12 must be divisible by the 8 devices" in stdout


def test_task_loop_scan_over_four_devices_trains_like_one_vmapped_device(tmp_path):
    """meta-batch 8 on 4 devices with task_loop=scan: each device scans its 2 tasks one at a time, then one mean."""
    def run(devices, loop):
        code = f"""
from fewjax.train import train_and_evaluate
from fewjax.methods import task_chunk_size
from tests.train.test_multidevice import multi_config
config = multi_config(None, "maml", task_loop={loop!r})
assert task_chunk_size(config) == (1 if {loop!r} == "scan" else None)
train_and_evaluate(config, {str(tmp_path / loop)!r}, progress=False)
"""
        run_in_subprocess(code, devices=devices)

    run(4, "scan")
    run(1, "vmap")
    assert_same_training(tmp_path / "vmap", tmp_path / "scan", multi_config(None, "maml"))
