"""Training throughput against device count: steps/s and tasks/s of the jitted training step on 1, 2, 4, 8 devices.

Run:  PYTHONPATH=. python bench/scaling.py [--devices 1 2 4 8] [--seconds 3] [--methods protonet maml] [--fsdp 1]
      [--hidden 16] [--queries 5] [--meta-batch 16]   (the Omniglot shapes: --hidden 64 --queries 15 --meta-batch 32)

Each device count runs in its own subprocess. On a CPU the devices are FAKE
(`XLA_FLAGS=--xla_force_host_platform_device_count=N` splits one host's cores into N "devices"): those rows show
that the sharded program compiles and runs, NOT how fast real devices scale; with 2 cores, more fake devices only
add partitioning and collective overhead. On a GPU/TPU host (`--real`) the child uses the real devices
(`jax.devices()[:N]`), and the numbers are achieved throughput.

The step is the trainer's (`fewjax.train.step.make_train_step`, on-device sampling, the task axis split over a
`("tasks", "fsdp")` mesh), timed after compilation over `--seconds`, blocking on every call. Shapes: 5-way
1-shot, 28x28x1 synthetic images (uint8 on the device), conv4; by default small enough for a 2-core CPU
(64 filters, 15 queries and meta-batch 32 take ~20 s a step there).
Prints one JSON line per (method, devices) and writes bench/results/scaling.json (--out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(method: str, devices: int, seconds: float, meta_batch: int, fsdp: int, real: bool, hidden: int,
          queries: int) -> dict:
    import jax
    import numpy as np

    from fewjax.data import ArraySource, episodes
    from fewjax.train.config import base_config
    from fewjax.train.methods import build_method, outer_optimizer
    from fewjax.train.sharding import batch_sharding, make_mesh, replicated, state_shardings
    from fewjax.train.step import init_state, make_train_step

    devs = jax.devices()[:devices] if real else jax.devices()
    assert len(devs) == devices, (devices, jax.devices())
    c = base_config()
    c.method, c.dataset, c.meta_batch_size = method, "image_folder", meta_batch
    c.ways, c.shots, c.queries, c.model.hidden = 5, 1, queries, hidden
    rng = np.random.default_rng(0)
    source = ArraySource(rng.integers(0, 256, (200 * 20, 28, 28, 1), dtype=np.uint8), np.repeat(np.arange(200), 20),
                         [str(i) for i in range(200)])
    sampler = episodes(source, ways=c.ways, shots=c.shots, queries=c.queries, seed=0)
    m, tx = build_method(c), outer_optimizer(c)
    mesh = make_mesh(fsdp=fsdp, devices=devs)
    state = init_state(m.init(jax.random.key(0), sampler.sample(0).support.x), tx, ema=False)
    placement = state_shardings(state, mesh)
    state = jax.device_put(state, placement)
    data = sampler.device_state(replicated(mesh))
    step = jax.jit(make_train_step(m, tx, meta_batch_size=meta_batch, sampler=sampler,
                                   task_sharding=batch_sharding(mesh) if mesh.size > 1 else None),
                   donate_argnums=0, out_shardings=(placement, replicated(mesh)))
    t0 = time.perf_counter()
    state, metrics = step(state, data)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 3:
        state, metrics = step(state, data)
        jax.block_until_ready(metrics)
        n += 1
    elapsed = time.perf_counter() - start
    return {
        "method": method, "devices": devices, "fake_devices": not real and jax.default_backend() == "cpu",
        "fsdp": fsdp, "meta_batch": meta_batch, "shape": f"5w1s{queries}q 28x28 conv4-{hidden}",
        "steps_per_s": round(n / elapsed, 3), "tasks_per_s": round(n * meta_batch / elapsed, 1),
        "first_call_s": round(compile_s, 2), "steps_timed": n, "loss": float(metrics["loss"]),
        "backend": jax.default_backend(), "device": str(devs[0].device_kind), "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "host": platform.node(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--methods", nargs="+", default=["protonet", "maml"])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--meta-batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--queries", type=int, default=5)
    p.add_argument("--fsdp", type=int, default=1)
    p.add_argument("--real", action="store_true", help="use the real accelerators (jax.devices()[:N]), not fake CPUs")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "scaling.json"))
    p.add_argument("--child", nargs=2, metavar=("METHOD", "DEVICES"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print("RESULT" + json.dumps(child(a.child[0], int(a.child[1]), a.seconds, a.meta_batch, a.fsdp, a.real, a.hidden,
                                                 a.queries)))
        return
    rows = []
    for method in a.methods:
        for n in a.devices:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
            if not a.real:
                env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
            cmd = [sys.executable, __file__, "--child", method, str(n), "--seconds", str(a.seconds),
                   "--meta-batch", str(a.meta_batch), "--fsdp", str(a.fsdp), "--hidden", str(a.hidden),
                   "--queries", str(a.queries)] + (["--real"] if a.real else [])
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.split("RESULT", 1)[1])
            print(json.dumps(row), flush=True)
            rows.append(row)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
