"""Scaling over devices: time, per-device FLOPs and collective bytes of training and evaluation against N devices.

Run:  PYTHONPATH=. python bench/scaling.py [--devices 1 2 4 8] [--processes 2] [--methods maml protonet]
      [--seconds 20] [--hidden 16] [--queries 5] [--meta-batch 16]
      (Omniglot MAML: --methods maml --hidden 64 --queries 15 --meta-batch 32 --out .../scaling_omniglot_maml.json)

For each device count N, a subprocess with N devices compiles and times, for each method, the trainer's step
(`fewjax.train.step.make_train_step`: on-device sampling, meta-gradient, Adam) and the evaluation call
(`fewjax.placement.map_per_device(method.evaluate)`) on a meta-batch (and an evaluation batch) of the same
global size, split over the N devices. Beside each time stand the CPU seconds the call used (all threads), the
compiled program's per-device FLOPs (counted through loops, `fewjax.train.program_cost`) as a fraction of the
one-device program's, and the bytes its collectives move per call. `--processes P` adds the same rows for P
`jax.distributed` processes of one device each on 127.0.0.1 (gloo), to set beside one process with P devices.

On a CPU the devices are FAKE (`--xla_force_host_platform_device_count=N` splits one host's cores into N
"devices"): they share the same cores, so a program that gives each device 1/N of the work runs in about the
time of one device, whatever N; the FLOPs and collective columns are what carries over to real devices. On a
GPU/TPU host `--real` uses `jax.devices()[:N]`. Shapes: 5-way 1-shot, 28x28x1 synthetic images, conv4; the
config's CPU defaults (MAML: task_loop=scan, conv_grad=matmul; `--task-loop vmap --conv-grad xla` for the
accelerator path). The load average is recorded before and after each row: other jobs on the machine slow
every row alike. Prints one JSON line per row and writes bench/results/scaling.json (--out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(method: str, a):
    """The config, episode sampler and method of one benchmark row."""
    import numpy as np

    from fewjax.data import ArraySource, episodes
    from fewjax.experiment.config import base_config
    from fewjax.methods import build_method, resolve_platform

    c = base_config()
    c.method, c.dataset, c.meta_batch_size = method, "image_folder", a.meta_batch
    c.ways = c.test_ways = 5
    c.shots = c.test_shots = 1
    c.queries = c.test_queries = a.queries
    c.model.hidden, c.task_loop, c.model.conv_grad = a.hidden, a.task_loop, a.conv_grad
    c = resolve_platform(c)
    rng = np.random.default_rng(0)
    source = ArraySource(rng.integers(0, 256, (200 * 20, 28, 28, 1), dtype=np.uint8), np.repeat(np.arange(200), 20),
                         [str(i) for i in range(200)])
    return c, episodes(source, ways=5, shots=1, queries=a.queries, seed=0), build_method(c)


def timed(call, seconds: float) -> tuple[float, float, int]:
    """(median wall seconds, mean CPU seconds of this process) per call of `call()` (blocking), after a warm-up.

    The number of calls (at least 3, about `seconds` worth) is process 0's choice, so that every process of a
    `jax.distributed` group makes the same calls (each holds a collective the others wait for). CPU time counts
    every thread of the process; on a machine shared with other jobs it measures the work done, where wall time
    also measures the share of the cores the process obtained.
    """
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    jax.block_until_ready(call())
    t = time.perf_counter()
    jax.block_until_ready(call())
    calls = max(3, int(seconds / max(time.perf_counter() - t, 1e-6)))
    calls = int(multihost_utils.broadcast_one_to_all(np.int32(calls)))
    times: list[float] = []
    cpu = time.process_time()
    for _ in range(calls):
        t = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t)
    return statistics.median(times), (time.process_time() - cpu) / calls, calls


def _caller(kind: str, compiled, args):
    """A no-argument call of `compiled`: the train step threads its (donated) state from call to call."""
    if kind == "eval":
        return lambda: compiled(*args)
    holder = {"state": args[0]}

    def call():
        holder["state"], metrics = compiled(holder["state"], *args[1:])
        return metrics

    return call


def child(a) -> list[dict]:
    """The train and eval rows of every method on all devices of this process group."""
    import jax
    import numpy as np

    from fewjax.experiment.state import outer_optimizer
    from fewjax.methods import task_chunk_size
    from fewjax.train.program_cost import compiled_cost
    from fewjax.placement import batch_sharding, make_mesh, map_per_device, replicated, state_shardings
    from fewjax.experiment.state import init_state
    from fewjax.train.step import make_train_step

    devices = jax.devices()[:a.devices] if a.real else jax.devices()
    mesh = make_mesh(devices=devices)
    rows = []
    for method in a.methods:
        c, sampler, m = build(method, a)
        tx = outer_optimizer(c)
        params = m.init(jax.random.key(0), sampler.sample(0).support.x)
        state = init_state(params, tx, ema=False)
        placement = state_shardings(state, mesh)
        state = jax.device_put(state, placement)
        data = sampler.device_state(replicated(mesh))
        step = jax.jit(make_train_step(m, tx, meta_batch_size=a.meta_batch, sampler=sampler,
                                       task_sharding=batch_sharding(mesh) if mesh.size > 1 else None),
                       donate_argnums=0, out_shardings=(placement, replicated(mesh)))
        evaluate = jax.jit(map_per_device(m.evaluate, mesh) if mesh.size > 1 else m.evaluate)
        tasks = jax.device_put(sampler.eval_set(a.meta_batch, seed=1), batch_sharding(mesh))
        eval_params = jax.device_put(jax.tree.map(np.asarray, params), replicated(mesh))  # not donated by `step`
        for kind, jitted, args in (("train", step, (state, data)), ("eval", evaluate, (eval_params, tasks))):
            load_before = os.getloadavg()[0]
            t = time.perf_counter()
            compiled = jitted.lower(*args).compile()
            compile_s = time.perf_counter() - t
            cost = compiled_cost(compiled)
            seconds, cpu_seconds, calls = timed(_caller(kind, compiled, args), a.seconds)
            rows.append({
                "kind": kind, "method": method, "devices": mesh.size, "processes": jax.process_count(),
                "fake_devices": not a.real and jax.default_backend() == "cpu",
                "tasks_per_call": a.meta_batch, "shape": f"5w1s{a.queries}q 28x28 conv4-{a.hidden}",
                "task_loop": "scan" if task_chunk_size(c) == 1 else "vmap", "conv_grad": c.model.conv_grad,
                "s_per_call": round(seconds, 3), "cpu_s_per_call": round(cpu_seconds, 3),
                "tasks_per_s": round(a.meta_batch / seconds, 2), "calls_timed": calls,
                "gflop_per_device": round(cost["flops"] / 1e9, 4), "collective_bytes": cost["collective_bytes"],
                "largest_collective_bytes": cost["largest_collective"], "collectives": cost["collectives"],
                "param_bytes": sum(p.nbytes for p in jax.tree.leaves(params)), "compile_s": round(compile_s, 1),
                "load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2),
                "backend": jax.default_backend(), "device": str(devices[0].device_kind), "cpus": os.cpu_count(),
                "host": platform.node(),
            })
    return rows


def launch(a, *, devices: int, processes: int) -> list[dict]:
    """Runs `child` in `processes` subprocesses of `devices // processes` devices each: the rows of process 0,
    with `cpu_s_per_call` summed over the processes (all of them share this host's cores)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if not a.real:
        env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices // processes}", JAX_PLATFORMS="cpu")
    common = [sys.executable, __file__, "--child", "--devices", str(devices), "--seconds", str(a.seconds),
              "--meta-batch", str(a.meta_batch), "--hidden", str(a.hidden), "--queries", str(a.queries),
              "--task-loop", a.task_loop, "--conv-grad", a.conv_grad, "--methods", *a.methods] + (
                  ["--real"] if a.real else [])
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"
        cmds = [common + ["--coordinator", address, "--num-processes", str(processes), "--process-id", str(i)]
                for i in range(processes)]
    else:
        cmds = [common]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in cmds]
    outputs = [p.communicate() for p in procs]
    for p, (out, err) in zip(procs, outputs):
        if p.returncode:
            raise RuntimeError(f"scaling child failed ({devices} devices, {processes} processes):\n{err[-4000:]}")
    per_process = [json.loads(out.split("RESULT", 1)[1]) for out, _ in outputs]
    for i, row in enumerate(per_process[0]):
        row["cpu_s_per_call"] = round(sum(rows[i]["cpu_s_per_call"] for rows in per_process), 3)
    return per_process[0]


def with_ratios(rows: list[dict]) -> list[dict]:
    """Adds the ratios to one device: `flops_vs_one_device` (ideal 1/N), `time_vs_one_device` and
    `cpu_vs_one_device` (ideal on fake devices: about 1, the same work on the same cores)."""
    one = {(r["kind"], r["method"]): r for r in rows if r["devices"] == 1 and r["processes"] == 1}
    for r in rows:
        base = one.get((r["kind"], r["method"]))
        if base:
            r["flops_vs_one_device"] = round(r["gflop_per_device"] / base["gflop_per_device"], 4)
            r["time_vs_one_device"] = round(r["s_per_call"] / base["s_per_call"], 2)
            r["cpu_vs_one_device"] = round(r["cpu_s_per_call"] / base["cpu_s_per_call"], 2)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--processes", type=int, default=2, help="also P jax.distributed processes of one device (0: no)")
    p.add_argument("--methods", nargs="+", default=["maml", "protonet"])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--meta-batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--queries", type=int, default=5)
    p.add_argument("--task-loop", default="auto", choices=["auto", "scan", "vmap"])
    p.add_argument("--conv-grad", default="auto", choices=["auto", "matmul", "xla"])
    p.add_argument("--real", action="store_true", help="use the real accelerators (jax.devices()[:N]), not fake CPUs")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "scaling.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--coordinator", help=argparse.SUPPRESS)
    p.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        if a.coordinator:
            import jax

            jax.distributed.initialize(coordinator_address=a.coordinator, num_processes=a.num_processes,
                                       process_id=a.process_id)
        rows = child(a)
        print("RESULT" + json.dumps(rows))
        return
    runs = [(n, 1) for n in a.devices] + ([(a.processes, a.processes)] if a.processes > 1 else [])
    rows = []
    for devices, processes in runs:
        for row in launch(a, devices=devices, processes=processes):
            print(json.dumps(row), flush=True)
            rows.append(row)
    record = {"command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "note": "fake CPU devices share the host's cores: per-device FLOPs should fall as 1/N and time stay "
                      "about flat. The machine ran other jobs (see the load averages): wall times are noisy; "
                      "cpu_s_per_call (CPU seconds of all processes' threads per call) measures the work done",
              "rows": with_ratios(rows)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
