"""Placement over a task mesh; the 8-device checks run in a subprocess with fake CPU devices."""
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fewjax.data import prefetch, shard_tasks, task_mesh

REPO = Path(__file__).resolve().parents[2]


def test_eight_fake_devices():
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        from fewjax.data import ArraySource, episodes, task_mesh, task_sharding, shard_tasks, replicated
        assert jax.device_count() == 8, jax.devices()
        mesh = task_mesh()
        assert mesh.axis_names == ("tasks",) and mesh.size == 8
        src = ArraySource(np.arange(60 * 4, dtype=np.uint8).reshape(60, 2, 2, 1), np.arange(60) % 6, list("abcdef"))
        sampler = episodes(src, ways=3, shots=1, queries=2, seed=0)
        host = sampler.sample_batch(0, 16)
        tasks = shard_tasks(host, mesh)
        x = tasks.support.x
        assert x.sharding == task_sharding(mesh) and len(x.addressable_shards) == 8
        assert all(s.data.shape == (2, 3, 2, 2, 1) for s in x.addressable_shards)
        np.testing.assert_array_equal(np.asarray(x), host.support.x)
        try:
            shard_tasks(sampler.sample_batch(0, 12), mesh)
            raise SystemExit("no error for 12 tasks on 8 devices")
        except ValueError as e:
            assert "multiple of 8" in str(e), e
        state = sampler.device_state(replicated(mesh))
        step = jax.jit(sampler.device_sample, out_shardings=task_sharding(mesh))
        out = step(state, 3, jnp.arange(16))
        assert len(out.query.x.addressable_shards) == 8
        ref = sampler.device_sample(sampler.device_state(), 3, jnp.arange(16))
        np.testing.assert_array_equal(np.asarray(out.query.x), np.asarray(ref.query.x))
        sub = task_mesh(jax.devices()[:2])
        assert sub.size == 2
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_shard_tasks_single_device_roundtrip():
    mesh = task_mesh()
    batch = {"x": np.arange(mesh.size * 3 * 2).reshape(mesh.size * 3, 2)}
    out = shard_tasks(batch, mesh)
    np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])


def test_prefetch_order_put_and_errors():
    assert list(prefetch(range(10), size=3, put=lambda v: v * 2)) == [2 * i for i in range(10)]

    def failing():
        yield 1
        raise RuntimeError("boom in producer")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="boom in producer"):
        next(it)
    with pytest.raises(ValueError, match="size must be >= 1"):
        prefetch(range(3), size=0)


def test_prefetch_runs_ahead_and_closes():
    produced = []

    def slow():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    with prefetch(slow(), size=2) as it:
        assert next(it) == 0
        time.sleep(0.3)
        assert len(produced) >= 3  # computed ahead while the consumer slept
        n_threads = threading.active_count()
    time.sleep(0.3)
    assert threading.active_count() <= n_threads - 1
    assert len(produced) <= 6  # bounded: stopped after close
