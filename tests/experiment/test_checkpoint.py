"""Tests for fewjax.experiment.checkpoint: async saves, retention, fallback past partial/corrupt checkpoints, errors."""

import errno
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from orbax.checkpoint._src.path import async_path

from fewjax.experiment.checkpoint import Checkpoints, CorruptCheckpointError

REPO = Path(__file__).resolve().parents[2]


def make_state(seed=0, shape=(4, 3)):
    """params, adam state after two updates, an int step, a typed key and a raw uint32 key."""
    k = jax.random.key(seed)
    params = {"w": jax.random.normal(k, shape, jnp.float32), "b": jnp.full((shape[1],), 0.1, jnp.float32)}
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)
    for i in range(2):
        grads = jax.tree.map(lambda p: jnp.sin(p + i), params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return {
        "params": params,
        "opt_state": opt_state,
        "step": jnp.int32(7 + seed),
        "rng": jax.random.fold_in(jax.random.key(seed), 3),
        "raw_rng": jax.random.PRNGKey(seed + 11),
    }


def as_bits(tree):
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        x = np.asarray(x)
        return x.dtype.str, x.shape, x.tobytes()

    return jax.tree.map(leaf, tree)


def assert_bit_exact(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert as_bits(a) == as_bits(b)


@pytest.fixture
def blocked_writes(monkeypatch):
    """Holds Orbax's background writes until the returned event is set (main-thread writes go through)."""
    release = threading.Event()
    original = async_path.write_text

    async def write_text(path, text):
        if threading.current_thread() is not threading.main_thread():
            assert release.wait(30), "test never released the blocked checkpoint write"
        return await original(path, text)

    monkeypatch.setattr(async_path, "write_text", write_text)
    yield release
    release.set()


def test_roundtrip_is_bit_exact(tmp_path):
    state = make_state()
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(7, state, config={"lr": 1e-3, "ways": 5, "name": "maml", "sizes": [1, 2]})
        ckpts.wait()
        restored, info = ckpts.restore(make_state(seed=1))
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        from_abstract, _ = ckpts.restore(abstract, step=7)
    assert_bit_exact(restored, state)
    assert_bit_exact(from_abstract, state)
    assert jax.dtypes.issubdtype(restored["rng"].dtype, jax.dtypes.prng_key)
    assert restored["raw_rng"].dtype == jnp.uint32
    assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
    assert info["step"] == 7 and info["metrics"] is None
    assert info["config"] == {"lr": 1e-3, "ways": 5, "name": "maml", "sizes": [1, 2]}


def test_save_is_async_and_survives_donated_buffers(tmp_path, blocked_writes):
    state = make_state()
    expected = jax.tree.map(np.asarray, {"params": state["params"], "step": state["step"]})
    ckpts = Checkpoints(tmp_path)
    ckpts.save(1, state)
    # The save returned while its write is still held: the step is not complete yet.
    assert ckpts.latest_step() is None and not (tmp_path / "1").exists()
    for leaf in jax.tree.leaves(state):  # what a donating train step does to the old state
        leaf.delete()
    blocked_writes.set()
    ckpts.wait()
    assert ckpts.latest_step() == 1 and (tmp_path / "1").is_dir()
    restored, _ = ckpts.restore(make_state())
    ckpts.close()
    assert_bit_exact({"params": restored["params"], "step": restored["step"]}, expected)


def test_old_checkpoint_is_kept_until_the_newer_one_is_complete(tmp_path, blocked_writes):
    blocked_writes.set()
    ckpts = Checkpoints(tmp_path, keep_last=1, keep_best=False)
    ckpts.save(1, make_state(1))
    ckpts.wait()
    blocked_writes.clear()
    ckpts.save(2, make_state(2))
    assert (tmp_path / "1").is_dir() and ckpts.latest_step() == 1
    blocked_writes.set()
    ckpts.wait()
    ckpts.close()
    assert not (tmp_path / "1").exists() and (tmp_path / "2").is_dir()


def test_keeps_last_k_plus_best_and_remembers_best_after_reopen(tmp_path):
    state = make_state()
    accs = {10: 0.2, 20: 0.9, 30: 0.4, 40: None, 50: 0.5, 60: 0.3}
    with Checkpoints(tmp_path, keep_last=2) as ckpts:
        for step, acc in accs.items():
            metrics = None if acc is None else {"val_accuracy": acc, "loss": 1.0 - acc}
            ckpts.save(step, state, metrics=metrics)
        ckpts.wait()
        assert ckpts.all_steps() == [20, 50, 60]
        assert ckpts.best_step() == 20
    with Checkpoints(tmp_path, keep_last=2) as again:
        assert again.all_steps() == [20, 50, 60] and again.best_step() == 20
        _, info = again.restore(state, step="best")
        assert info["step"] == 20 and info["metrics"]["val_accuracy"] == pytest.approx(0.9)


def test_best_mode_min(tmp_path):
    state = {"x": jnp.zeros(2)}
    with Checkpoints(tmp_path, keep_last=1, best_metric="loss", best_mode="min") as ckpts:
        for step, loss in ((1, 3.0), (2, 1.0), (3, 2.0), (4, 5.0)):
            ckpts.save(step, state, metrics={"loss": np.float32(loss)})
        ckpts.wait()
        assert ckpts.all_steps() == [2, 4] and ckpts.best_step() == 2


def test_sync_mode_and_idempotent_and_older_steps(tmp_path):
    state = {"x": jnp.arange(3.0)}
    with Checkpoints(tmp_path, async_save=False) as ckpts:
        ckpts.save(5, state)
        assert (tmp_path / "5").is_dir() and ckpts.latest_step() == 5
        ckpts.save(5, {"x": jnp.ones(3)})  # e.g. a preemption save right after the periodic one: no-op
        assert ckpts.all_steps() == [5]
        with pytest.raises(ValueError, match=r"step 3.*newer checkpoint \(step 5\).*--workdir"):
            ckpts.save(3, state)
        ckpts.save(3, state, force=True)
        assert ckpts.all_steps() == [3, 5]
        restored, info = ckpts.restore(state)
    assert info["step"] == 5 and np.array_equal(restored["x"], np.arange(3.0))


def test_partial_tmp_dir_is_skipped_with_a_warning_and_kept(tmp_path):
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, make_state(1))
        ckpts.save(2, make_state(2))
    # What kill -9 during the save of step 3 leaves behind.
    partial = tmp_path / "3.orbax-checkpoint-tmp"
    shutil.copytree(tmp_path / "2", partial)
    (partial / "state" / "_METADATA").unlink()
    with Checkpoints(tmp_path) as ckpts:
        assert ckpts.latest_step() == 2
        with pytest.warns(RuntimeWarning, match=str(partial)):
            restored, info = ckpts.restore(make_state())
    assert info["step"] == 2
    assert_bit_exact(restored, make_state(2))
    assert partial.is_dir()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's failed-load leftovers
@pytest.mark.parametrize("damage", ["truncate_data", "delete_metadata", "delete_checkpoint_metadata"])
def test_corrupt_latest_falls_back_to_previous(tmp_path, damage):
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, make_state(1), config={"seed": 1})
        ckpts.save(2, make_state(2), config={"seed": 2})
    bad = tmp_path / "2"
    if damage == "truncate_data":
        for f in (bad / "state" / "d").iterdir():
            with open(f, "r+b") as fh:
                fh.truncate(10)
    elif damage == "delete_metadata":
        (bad / "state" / "_METADATA").unlink()
    else:
        (bad / "_CHECKPOINT_METADATA").unlink()
    files_before = sorted(p.relative_to(bad) for p in bad.rglob("*"))
    with Checkpoints(tmp_path) as ckpts:
        with pytest.warns(RuntimeWarning, match=rf"{bad}\b.*partial or corrupt"):
            restored, info = ckpts.restore(make_state())
        assert info["step"] == 1 and info["config"] == {"seed": 1}
        assert_bit_exact(restored, make_state(1))
        with pytest.raises(CorruptCheckpointError, match=str(bad)):
            ckpts.restore(make_state(), step=2)
    assert sorted(p.relative_to(bad) for p in bad.rglob("*")) == files_before  # nothing deleted


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_resumed_run_saves_over_a_corrupt_step_by_moving_it_aside(tmp_path):
    with Checkpoints(tmp_path, keep_last=5) as ckpts:
        ckpts.save(1, make_state(1))
        ckpts.save(2, make_state(2))
    (tmp_path / "2" / "state" / "_METADATA").unlink()
    with Checkpoints(tmp_path, keep_last=5) as ckpts:
        with pytest.warns(RuntimeWarning):
            _, info = ckpts.restore(make_state())
        assert info["step"] == 1
        with pytest.warns(RuntimeWarning, match="moved the corrupt checkpoint"):
            ckpts.save(2, make_state(3))
        ckpts.wait()
        restored, info = ckpts.restore(make_state())
    assert info["step"] == 2
    assert_bit_exact(restored, make_state(3))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("2.corrupt-")]
    assert len(aside) == 1 and (aside[0] / "state").is_dir()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_all_corrupt_or_empty_is_a_clear_error(tmp_path):
    with Checkpoints(tmp_path) as ckpts:
        with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*--workdir"):
            ckpts.restore(make_state())
        with pytest.raises(FileNotFoundError, match="step 4"):
            ckpts.restore(make_state(), step=4)
        with pytest.raises(FileNotFoundError, match="val_accuracy"):
            ckpts.restore(make_state(), step="best")
        ckpts.save(1, make_state())
        ckpts.wait()
    (tmp_path / "1" / "state" / "manifest.ocdbt").unlink()
    with Checkpoints(tmp_path) as ckpts:
        with pytest.warns(RuntimeWarning), pytest.raises(FileNotFoundError, match="partial or corrupt"):
            ckpts.restore(make_state())


def test_read_config_without_target(tmp_path):
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, {"x": jnp.zeros(1)}, config={"method": "protonet", "ways": 5})
        ckpts.save(2, {"x": jnp.zeros(1)}, config={"method": "protonet", "ways": 20}, metrics={"val_accuracy": 0.1})
        ckpts.save(3, {"x": jnp.zeros(1)})
        assert ckpts.read_config() == {}
        assert ckpts.read_config(2) == {"method": "protonet", "ways": 20}
        assert ckpts.read_config(1)["ways"] == 5
        assert ckpts.read_config("best")["ways"] == 20
        with pytest.raises(ValueError, match=r"config\['fn'\].*JSON"):
            ckpts.save(4, {"x": jnp.zeros(1)}, config={"fn": print})
        with pytest.raises(ValueError, match="'latests'"):
            ckpts.read_config("latests")
        assert ckpts.all_steps() == [1, 2, 3]


def test_ml_collections_config_is_accepted(tmp_path):
    ml_collections = pytest.importorskip("ml_collections")
    cfg = ml_collections.ConfigDict({"model": {"width": 64}, "lr": 0.4})
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, {"x": jnp.zeros(1)}, config=cfg)
        assert ckpts.read_config() == {"model": {"width": 64}, "lr": 0.4}


@pytest.mark.parametrize(
    "other, key",
    [
        (lambda s: {**s, "params": {**s["params"], "w": jnp.zeros((5, 3))}}, "params/w"),
        (lambda s: {**s, "params": {**s["params"], "extra": jnp.zeros(2)}}, "params/extra"),
        (lambda s: {k: v for k, v in s.items() if k != "raw_rng"}, "raw_rng"),
    ],
)
def test_checkpoint_of_another_model_is_one_clear_error(tmp_path, other, key):
    state = make_state()
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, state)
        ckpts.save(2, state)
        with pytest.raises(ValueError, match=rf"'{key}'.*another model.*new --workdir") as err:
            ckpts.restore(other(make_state()))
    assert str(tmp_path / "2") in str(err.value)  # no silent fallback to step 1


def test_read_only_mode_restores_and_refuses_saves(tmp_path):
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, make_state(), config={"a": 1})
    with Checkpoints(tmp_path, read_only=True) as ro:
        assert ro.read_config() == {"a": 1}
        restored, _ = ro.restore(make_state(5))
        assert_bit_exact(restored, make_state())
        with pytest.raises(PermissionError, match="read_only"):
            ro.save(2, make_state())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Checkpoints(tmp_path / "missing", read_only=True)


def test_read_only_directory_fails_at_construction(tmp_path):
    ro = tmp_path / "ckpt"
    with Checkpoints(ro) as ckpts:
        ckpts.save(1, {"x": jnp.arange(3.0)}, config={"a": 1})
    for p in [ro, *ro.rglob("*")]:
        p.chmod(p.stat().st_mode & 0o555)
    code = textwrap.dedent(
        f"""
        import jax.numpy as jnp
        from fewjax.experiment.checkpoint import Checkpoints
        with Checkpoints({str(ro)!r}, read_only=True) as ckpts:  # evaluation works on a read-only directory
            assert ckpts.read_config() == {{"a": 1}}
            assert ckpts.restore({{"x": jnp.zeros(3)}})[0]["x"].tolist() == [0.0, 1.0, 2.0]
        for d in ({str(ro)!r}, {str(ro / 'sub')!r}):
            try:
                Checkpoints(d)
            except PermissionError as e:
                assert d in str(e) and "writable --workdir" in str(e), e
                print("PermissionError", d)
            else:
                raise SystemExit("no error for " + d)
        """
    )
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root ignores permission bits unless it drops the capabilities that let it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        for p in [ro, *ro.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    if proc.returncode != 0 and "Operation not permitted" in proc.stderr and "setpriv" in proc.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PermissionError") == 2


def test_read_only_mount_is_a_permission_error(tmp_path, monkeypatch):
    def read_only_fs(self, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "write_bytes", read_only_fs)
    with pytest.raises(PermissionError, match=rf"{tmp_path}.*not writable.*Read-only file system.*--workdir"):
        Checkpoints(tmp_path)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_disk_full_during_save_is_clear_and_keeps_previous(tmp_path, monkeypatch):
    state = make_state(1)
    ckpts = Checkpoints(tmp_path, keep_last=1, keep_best=False)
    ckpts.save(1, state)
    ckpts.wait()

    async def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(async_path, "write_text", full)
    with pytest.raises(OSError, match=rf"No space left.*step 2 in {tmp_path}.*intact") as err:
        ckpts.save(2, make_state(2))
        ckpts.wait()  # an async failure surfaces here at the latest
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert ckpts.all_steps() == [1]  # keep_last=1 did not delete step 1 for the failed step 2
    with pytest.warns(RuntimeWarning, match="2.orbax-checkpoint-tmp"):  # the failed save's leftovers
        restored, info = ckpts.restore(make_state())
    assert info["step"] == 1
    assert_bit_exact(restored, state)
    ckpts.save(2, make_state(2))  # disk freed: the run goes on
    ckpts.close()
    assert Checkpoints(tmp_path, read_only=True).all_steps() == [2]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"keep_last": 0}, "keep_last"),
        ({"keep_last": 2.5}, "keep_last"),
        ({"best_mode": "avg"}, "best_mode"),
        ({"best_metric": ""}, "best_metric"),
    ],
)
def test_bad_options(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Checkpoints(tmp_path, **kwargs)


def test_bad_steps_and_closed(tmp_path):
    ckpts = Checkpoints(tmp_path)
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="step"):
            ckpts.save(bad, {"x": jnp.zeros(1)})
    with pytest.raises(ValueError, match="metrics"):
        ckpts.save(1, {"x": jnp.zeros(1)}, metrics=[0.5])
    ckpts.save(jnp.int32(1), {"x": jnp.zeros(1)}, metrics={"val_accuracy": jnp.float32(0.25)})
    ckpts.close()
    ckpts.close()
    with pytest.raises(RuntimeError, match="closed"):
        ckpts.save(2, {"x": jnp.zeros(1)})
    assert Checkpoints(tmp_path).best_step() == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        Checkpoints(tmp_path / "file")


KILL_CHILD = """
import sys, threading, time
import jax.numpy as jnp
from orbax.checkpoint._src.path import async_path
from fewjax.experiment.checkpoint import Checkpoints

original = async_path.write_text
async def write_text(path, text):
    if threading.current_thread() is not threading.main_thread() and "/3.orbax-checkpoint-tmp" in str(path):
        print("step 3 is being written", flush=True)
        time.sleep(600)  # killed here, in the middle of the save
    return await original(path, text)
async_path.write_text = write_text

ckpts = Checkpoints(sys.argv[1], keep_last=2)
for step in (1, 2, 3):
    ckpts.save(step, {"w": jnp.full((8,), float(step))}, config={"step": step})
ckpts.wait()
"""


def test_kill_9_in_the_middle_of_a_save_leaves_the_previous_checkpoint_restorable(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "step 3 is being written"
    finally:
        child.kill()  # SIGKILL
        child.wait(30)
    assert (tmp_path / "3.orbax-checkpoint-tmp").is_dir() and not (tmp_path / "3").exists()
    with Checkpoints(tmp_path, keep_last=2) as ckpts:
        assert ckpts.all_steps() == [1, 2]
        with pytest.warns(RuntimeWarning, match="3.orbax-checkpoint-tmp"):
            restored, info = ckpts.restore({"w": jnp.zeros(8)})
        assert info["step"] == 2 and info["config"] == {"step": 2}
        assert np.array_equal(restored["w"], np.full((8,), 2.0, np.float32))
        ckpts.save(3, {"w": jnp.full((8,), 30.0)})  # the resumed run saves step 3 again
        ckpts.wait()
        assert ckpts.all_steps() == [2, 3]


SHARDED_CHILD = """
import sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from fewjax.experiment.checkpoint import Checkpoints

assert jax.device_count() == 2, jax.devices()
mesh = Mesh(np.array(jax.devices()), ("tasks",))
sharded = NamedSharding(mesh, P("tasks"))
replicated = NamedSharding(mesh, P())
state = {"x": jax.device_put(jnp.arange(8.0), sharded), "w": jax.device_put(jnp.ones((3, 2)), replicated)}
with Checkpoints(sys.argv[1]) as ckpts:
    ckpts.save(1, state)
    ckpts.wait()
    target = {"x": jax.ShapeDtypeStruct((8,), jnp.float32, sharding=sharded),
              "w": jax.ShapeDtypeStruct((3, 2), jnp.float32, sharding=replicated)}
    restored, _ = ckpts.restore(target)
assert restored["x"].sharding == sharded and restored["w"].sharding == replicated
assert np.array_equal(restored["x"], np.arange(8.0)) and np.array_equal(restored["w"], np.ones((3, 2)))
print("ok")
"""


def test_sharded_state_restores_with_its_shardings(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED_CHILD, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr[-3000:]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_retention_resumes_after_a_failed_save(tmp_path, monkeypatch):
    ckpts = Checkpoints(tmp_path, keep_last=1, keep_best=False)
    ckpts.save(1, {"x": jnp.zeros(2)})
    ckpts.wait()

    async def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(async_path, "write_text", full)
    ckpts.save(2, {"x": jnp.ones(2)})
    with pytest.raises(OSError, match="No space left"):
        ckpts.wait()
    monkeypatch.undo()
    ckpts.save(3, {"x": jnp.ones(2)})
    ckpts.close()
    assert Checkpoints(tmp_path, read_only=True).all_steps() == [3]  # step 1 is not leaked


def test_a_save_in_flight_is_finished_when_the_interpreter_exits_without_close(tmp_path):
    code = textwrap.dedent(
        """
        import sys, jax.numpy as jnp
        from fewjax.experiment.checkpoint import Checkpoints
        Checkpoints(sys.argv[1]).save(1, {"x": jnp.ones((256, 256))})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    restored, _ = Checkpoints(tmp_path, read_only=True).restore({"x": jnp.zeros((256, 256))})
    assert np.array_equal(restored["x"], np.ones((256, 256)))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_bit_flips_in_the_newest_step_are_detected_and_restore_falls_back(tmp_path):
    """A flipped bit in a data file (same size) used to restore silently as other (even NaN) weights."""
    old, new = make_state(1, shape=(64, 32)), make_state(2, shape=(64, 32))
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, old, config={"seed": 1})
        ckpts.save(2, new, config={"seed": 2})
    data_files = [p for p in (tmp_path / "2" / "state").rglob("d/*") if p.is_file()]
    assert data_files
    fell_back = 0
    for path in data_files:
        pristine = path.read_bytes()
        for offset in np.linspace(0, len(pristine) - 1, 7).astype(int):
            flip_byte(path, offset)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with Checkpoints(tmp_path, read_only=True) as ckpts:
                    restored, info = ckpts.restore(make_state(shape=(64, 32)))
            if info["step"] == 2:  # a byte the reader never uses (padding): the data must then be intact
                assert_bit_exact(restored, new)
            else:
                fell_back += 1
                assert info["step"] == 1 and info["config"] == {"seed": 1}
                assert_bit_exact(restored, old)
                assert any(str(tmp_path / "2") in str(w.message) and "corrupt" in str(w.message) for w in caught)
            path.write_bytes(pristine)
    assert fell_back >= 5
    with Checkpoints(tmp_path, read_only=True) as ckpts:  # undamaged again: the newest step is back
        assert ckpts.restore(make_state(shape=(64, 32)))[1]["step"] == 2


def test_checksum_mismatch_names_the_array_and_an_edited_config_is_corrupt(tmp_path):
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, make_state(1), config={"lr": 0.1})
        ckpts.save(2, make_state(2), config={"lr": 0.1}, metrics={"val_accuracy": 0.5})
    meta = tmp_path / "2" / "_CHECKPOINT_METADATA"
    meta.write_text(meta.read_text().replace('"lr": 0.1', '"lr": 0.2'))
    with Checkpoints(tmp_path, read_only=True) as ckpts:
        with pytest.warns(RuntimeWarning, match="config does not match its checksum"):
            assert ckpts.read_config() == {"lr": 0.1}
        with pytest.raises(CorruptCheckpointError, match="config does not match"):
            ckpts.restore(make_state(), step=2)


def test_non_finite_state_is_refused_at_save_and_skipped_at_restore(tmp_path):
    import orbax.checkpoint as ocp

    from fewjax.experiment import checkpoint as module

    bad = {"w": jnp.array([1.0, jnp.nan]), "k": jnp.arange(2)}
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, {"w": jnp.ones(2), "k": jnp.arange(2)})
        with pytest.raises(ValueError, match=r"'w' holds NaN or inf: not saved"):
            ckpts.save(2, bad)
        # A step written before checksums existed (format 1) that holds NaN, as a corrupted file used to restore.
        ckpts._mgr.save(2, args=ocp.args.Composite(state=ocp.args.StandardSave(bad)), force=True,
                        custom_metadata={module._MARKER: 1, "config": {}})
        ckpts._mgr.wait_until_finished()
    with Checkpoints(tmp_path, read_only=True) as ckpts:
        with pytest.warns(RuntimeWarning, match=r"2: it is partial or corrupt \('w' holds NaN or inf\)"):
            restored, info = ckpts.restore({"w": jnp.zeros(2), "k": jnp.zeros(2, jnp.int32)})
    assert info["step"] == 1 and restored["w"].tolist() == [1.0, 1.0]


def test_fingerprints_see_every_bit_and_position_for_every_dtype():
    from fewjax.experiment.integrity import fingerprints as _fingerprints

    leaves = {"f32": jnp.linspace(-1, 1, 12).reshape(3, 4), "bf16": jnp.arange(6, dtype=jnp.bfloat16),
              "i8": jnp.arange(5, dtype=jnp.int8), "bool": jnp.array([True, False]), "key": jax.random.key(3),
              "u32": jnp.arange(4, dtype=jnp.uint32), "scalar": jnp.int32(7)}
    base = _fingerprints(leaves)
    assert len(set(base.values())) == len(base) and base == _fingerprints(jax.tree.map(jnp.copy, leaves))
    for name, leaf in leaves.items():
        if name == "key":
            changed = jax.random.key(4)
        elif leaf.dtype == jnp.bool_:
            changed = ~leaf
        elif leaf.ndim == 0:
            changed = leaf + 1
        else:  # one element's lowest bit, then a swap of two elements (same multiset, other positions)
            bits = jax.lax.bitcast_convert_type(leaf.ravel(), {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[
                leaf.dtype.itemsize])
            flipped = jax.lax.bitcast_convert_type(bits.at[1].set(bits[1] ^ 1), leaf.dtype).reshape(leaf.shape)
            assert _fingerprints({**leaves, name: flipped})[name] != base[name], name
            changed = leaf.ravel()[jnp.array([1, 0, *range(2, leaf.size)])].reshape(leaf.shape)
        assert _fingerprints({**leaves, name: changed})[name] != base[name], name


def test_steps_written_by_the_previous_layer_still_restore_rank_and_retire(tmp_path):
    """Workdirs saved through Orbax's v1 training Checkpointer (the layer before CheckpointManager) resume as before."""
    from orbax.checkpoint.experimental import v1

    from fewjax.experiment import checkpoint as module
    from fewjax.experiment.integrity import digest, fingerprints

    state = make_state(1)
    old = v1.training.Checkpointer(tmp_path)
    for step, acc in ((1, 0.9), (2, 0.1)):
        integrity = {"arrays": fingerprints(state), "config": digest({"a": 1}),
                     "metrics": digest({"val_accuracy": acc})}
        old.save(step, state, force=True, metrics={"val_accuracy": acc},
                 custom_metadata={module._MARKER: 2, "config": {"a": 1}, "integrity": integrity})
    old.close()
    with Checkpoints(tmp_path, keep_last=1) as ckpts:
        assert ckpts.all_steps() == [1, 2] and ckpts.best_step() == 1 and ckpts.read_config() == {"a": 1}
        restored, info = ckpts.restore(make_state())
        assert info["step"] == 2 and info["metrics"] == {"val_accuracy": pytest.approx(0.1)}
        assert_bit_exact(restored, state)
        ckpts.save(3, state, metrics={"val_accuracy": 0.5})
    assert Checkpoints(tmp_path, read_only=True).all_steps() == [1, 3]  # the last one plus the best


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("code, error", [(errno.EDQUOT, OSError), (errno.EACCES, PermissionError), (None, RuntimeError)])
def test_save_errors_are_told_apart_by_errno_not_by_message(tmp_path, monkeypatch, code, error):
    """An OSError anywhere in the chain of causes decides; a message that only reads like one does not."""
    with Checkpoints(tmp_path) as ckpts:
        async def failing(path, text):
            if code is None:
                raise ValueError("No space left on device")  # e.g. a library's text, without an errno
            raise RuntimeError("wrapped") from OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(async_path, "write_text", failing)
        with pytest.raises(error, match=rf"step 1 in {tmp_path}.*intact") as err:
            ckpts.save(1, {"x": jnp.zeros(2)})
            ckpts.wait()
        monkeypatch.undo()
    assert type(err.value) is error and (code is None or err.value.errno == code)


def test_a_checkpoint_written_before_a_state_field_existed_restores_with_it_none(tmp_path):
    from typing import Any, NamedTuple

    from fewjax.experiment.state import TrainState, init_state

    class FiveFieldState(NamedTuple):  # TrainState before it gained `sampling`
        step: Any
        params: Any
        opt_state: Any
        ema_params: Any
        nonfinite_step: Any

    new = init_state({"w": jnp.arange(6.0).reshape(2, 3)}, optax.adam(1e-3), ema=False)
    old = FiveFieldState(*(getattr(new, f) for f in FiveFieldState._fields))
    with Checkpoints(tmp_path, async_save=False) as ckpts:
        ckpts.save(3, old, config={"a": 1})
    with Checkpoints(tmp_path, read_only=True) as ckpts:
        state, info = ckpts.restore(jax.eval_shape(lambda: new), step=3)
    assert isinstance(state, TrainState) and state.sampling is None and info["step"] == 3
    np.testing.assert_array_equal(state.params["w"], new.params["w"])
