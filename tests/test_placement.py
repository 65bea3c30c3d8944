"""fewjax.placement: meta-batches split over a mesh; the 8-device checks run in a subprocess with fake CPU devices."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from fewjax.placement import make_mesh, shard_local_tasks

REPO = Path(__file__).resolve().parents[1]


def test_eight_fake_devices():
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        from fewjax.data import ArraySource, episodes
        from fewjax.placement import batch_sharding, make_mesh, replicated, shard_local_tasks
        assert jax.device_count() == 8, jax.devices()
        mesh = make_mesh()
        assert mesh.axis_names == ("tasks", "fsdp") and mesh.size == 8
        src = ArraySource(np.arange(60 * 4, dtype=np.uint8).reshape(60, 2, 2, 1), np.arange(60) % 6, list("abcdef"))
        sampler = episodes(src, ways=3, shots=1, queries=2, seed=0)
        host = sampler.sample_batch(0, 16)
        tasks = shard_local_tasks(host, mesh, meta_batch_size=16)
        x = tasks.support.x
        assert x.sharding == batch_sharding(mesh) and len(x.addressable_shards) == 8
        assert all(s.data.shape == (2, 3, 2, 2, 1) for s in x.addressable_shards)
        np.testing.assert_array_equal(np.asarray(x), host.support.x)
        try:
            shard_local_tasks(sampler.sample_batch(0, 12), mesh, meta_batch_size=12)
            raise SystemExit("no error for 12 tasks on 8 devices")
        except ValueError as e:
            assert "multiple of 8" in str(e), e
        state = sampler.device_state(replicated(mesh))
        step = jax.jit(sampler.device_sample, out_shardings=batch_sharding(mesh))
        out = step(state, 3, jnp.arange(16))
        assert len(out.query.x.addressable_shards) == 8
        ref = sampler.device_sample(sampler.device_state(), 3, jnp.arange(16))
        np.testing.assert_array_equal(np.asarray(out.query.x), np.asarray(ref.query.x))
        assert make_mesh(devices=jax.devices()[:2]).size == 2
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_one_device_roundtrip():
    mesh = make_mesh()
    batch = {"x": np.arange(mesh.size * 3 * 2).reshape(mesh.size * 3, 2)}
    out = shard_local_tasks(batch, mesh, meta_batch_size=mesh.size * 3)
    np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])
