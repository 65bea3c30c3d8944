"""Shared pieces of fewjax's benchmarks: workloads, the trainer's step, inputs, timing, memory, result files.

The workloads mirror the PyTorch peers in `../shared/bench/peers/common.py` (same shapes, same optimiser, random
inputs of the right shapes generated outside the timed region). The step is the trainer's own
(`fewjax.methods.build_method` + `fewjax.train.step.make_train_step`, jitted with the state donated): the
code users run, not a special fast path.

Example:
    >>> from bench.common import WORKLOADS, build
    >>> run = build(WORKLOADS["W1"], tasks=2)
    >>> run.batches[0].support.x.shape
    (2, 5, 28, 28, 1)
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

import fewjax
from fewjax.experiment.config import base_config
from fewjax.experiment.state import outer_optimizer
from fewjax.methods import build_method, resolve_platform, task_chunk_size
from fewjax.experiment.state import init_state
from fewjax.train.step import make_train_step
from fewjax.types import Batch, Task

RESULTS = Path(__file__).resolve().parent / "results"

# Same as the peers' WORKLOADS (W1-W4); W5/W6 are fewjax-only (evaluation, memory against inner steps).
WORKLOADS: dict[str, dict[str, Any]] = {
    "W1": dict(kind="maml", n_way=5, k_shot=1, q_query=15, tasks=32, inner_steps=1, inner_lr=0.4,
               first_order=False, outer_lr=1e-3),
    "W2": dict(kind="maml", n_way=5, k_shot=1, q_query=15, tasks=32, inner_steps=5, inner_lr=0.4,
               first_order=False, outer_lr=1e-3),
    "W3": dict(kind="maml", n_way=5, k_shot=1, q_query=15, tasks=32, inner_steps=5, inner_lr=0.4,
               first_order=True, outer_lr=1e-3),
    "W4": dict(kind="proto", n_way=60, k_shot=5, q_query=5, tasks=1, outer_lr=1e-3),
}


def trainer_config(cfg: dict, *, tasks: int | None = None, remat: bool = False, overrides: dict | None = None):
    """The trainer config (`fewjax.experiment.config.base_config`) that runs workload `cfg`; `overrides` maps dotted
    keys to values (strings are parsed as the key's type), e.g. `{"task_loop": "vmap"}`."""
    c = base_config()
    c.method = "protonet" if cfg["kind"] == "proto" else ("fomaml" if cfg["first_order"] else "maml")
    c.ways, c.shots, c.queries = cfg["n_way"], cfg["k_shot"], cfg["q_query"]
    c.meta_batch_size = cfg["tasks"] if tasks is None else tasks
    if cfg["kind"] == "maml":
        c.inner_steps, c.inner_lr = cfg["inner_steps"], cfg["inner_lr"]
    c.remat = remat
    c.optim.lr, c.optim.schedule, c.optim.grad_clip = cfg["outer_lr"], "constant", 0.0
    for key, value in (overrides or {}).items():
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node[p]
        node[leaf] = _parse_like(node[leaf], value, key)
    return c


def _parse_like(old, value, key: str):
    """`value` (a string from the command line) as the type of the key's current value; bools spelled out."""
    if not isinstance(value, str) or isinstance(old, str):
        return value
    if isinstance(old, bool):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"--set {key}={value}: {key} is a bool; write true or false.")
        return value.lower() == "true"
    return type(old)(value)


def random_tasks(key: jax.Array, *, tasks: int, n_way: int, k_shot: int, q_query: int, sorted_support: bool) -> Task:
    """Random images `[T, n*k, 28, 28, 1]` and labels of the right shapes (the peers time the same inputs).

    ProtoNet's support labels are class-major (`arange(n).repeat(k)`), as in the peer; MAML's are random.
    """
    ks = jax.random.split(key, 4)
    xs = jax.random.normal(ks[0], (tasks, n_way * k_shot, 28, 28, 1))
    xq = jax.random.normal(ks[1], (tasks, n_way * q_query, 28, 28, 1))
    if sorted_support:
        ys = jnp.broadcast_to(jnp.repeat(jnp.arange(n_way), k_shot), (tasks, n_way * k_shot))
    else:
        ys = jax.random.randint(ks[2], (tasks, n_way * k_shot), 0, n_way)
    yq = jax.random.randint(ks[3], (tasks, n_way * q_query), 0, n_way)
    return Task(Batch(xs, ys.astype(jnp.int32)), Batch(xq, yq.astype(jnp.int32)))


class Run(NamedTuple):
    step: Callable  # jitted step(state, tasks) -> (state, metrics), state donated
    state: Any
    batches: list  # a few distinct meta-batches on the device, cycled through
    tasks: int
    config: Any  # the trainer config
    chunk_size: int | None  # tasks vmapped at once (None: the whole meta-batch), from config.task_loop


def build(cfg: dict, *, tasks: int | None = None, remat: bool = False, num_batches: int = 2, seed: int = 0,
          overrides: dict | None = None) -> Run:
    """The trainer's jitted step for workload `cfg`, its initial state and `num_batches` random meta-batches."""
    c = resolve_platform(trainer_config(cfg, tasks=tasks, remat=remat, overrides=overrides))
    method = build_method(c)
    tx = outer_optimizer(c)
    params = method.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
    state = init_state(params, tx, ema=False)
    step = jax.jit(make_train_step(method, tx, meta_batch_size=c.meta_batch_size), donate_argnums=0)
    keys = jax.random.split(jax.random.key(seed + 1), num_batches)
    batches = [random_tasks(k, tasks=c.meta_batch_size, n_way=cfg["n_way"], k_shot=cfg["k_shot"],
                            q_query=cfg["q_query"], sorted_support=cfg["kind"] == "proto") for k in keys]
    jax.block_until_ready(batches)
    chunk = task_chunk_size(c)
    return Run(step, state, batches, c.meta_batch_size, c, None if chunk == c.meta_batch_size else chunk)


# ----------------------------------------------------------------------------------------------- memory
def xla_memory(compiled) -> dict:
    """Buffer bytes XLA plans for one call of `compiled`: arguments + outputs + temporaries - donated aliases.

    This is the program's peak working set as XLA's buffer assignment sees it (not the process RSS).
    """
    m = compiled.memory_analysis()
    if m is None:
        return {}
    peak = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return dict(xla_peak_mb=round(peak / 2**20, 1), xla_temp_mb=round(m.temp_size_in_bytes / 2**20, 1),
                xla_argument_mb=round(m.argument_size_in_bytes / 2**20, 1))


def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def peak_rss_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024.0


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS counter (VmHWM) of this process; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------- timing
def compile_step(run: Run):
    """Lowers and compiles the step once; returns (compiled, seconds)."""
    t0 = time.perf_counter()
    compiled = run.step.lower(run.state, run.batches[0]).compile()
    return compiled, time.perf_counter() - t0


LIBRARY_OPS = ("ynn_fusion", "xnn_fusion", "onednn", "convolution(", "custom-call(")


def library_ops(compiled) -> dict:
    """How many of each library-backed op the compiled program holds: shows whether an XLA flag changed it."""
    text = compiled.as_text() or ""
    return {op: text.count(op) for op in LIBRARY_OPS if op in text}


def time_steps(compiled, state, batches, *, warmup: int, timed: int, losses: list | None = None):
    """Median-able wall times of `timed` steps after `warmup` steps; each step waits for its loss (as the peers'
    `float(loss)` does). Returns (times, state); every step's loss is appended to `losses` when it is given."""
    for i in range(warmup):
        state, metrics = compiled(state, batches[i % len(batches)])
        jax.block_until_ready(metrics["loss"])
        if losses is not None:
            losses.append(float(metrics["loss"]))
    times = []
    for i in range(timed):
        b = batches[(warmup + i) % len(batches)]
        t0 = time.perf_counter()
        state, metrics = compiled(state, b)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
        if losses is not None:
            losses.append(float(metrics["loss"]))
    return times, state


def summarize(times: list[float], tasks: int) -> dict:
    med = statistics.median(times)
    return dict(median_step_s=round(med, 4), steps_per_s=round(1.0 / med, 4), tasks_per_s=round(tasks / med, 3),
                min_step_s=round(min(times), 4), max_step_s=round(max(times), 4), timed=len(times))


# ----------------------------------------------------------------------------------------------- records
def versions() -> dict:
    import flax
    import jaxlib
    import optax

    return dict(python=platform.python_version(), jax=jax.__version__, jaxlib=jaxlib.__version__,
                flax=flax.__version__, optax=optax.__version__, fewjax=fewjax.__version__)


def machine() -> dict:
    d = jax.devices()[0]
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return dict(device=f"{d.platform}:{d.device_kind}", num_devices=jax.device_count(), cpus=os.cpu_count(),
                loadavg_1_5_15=load, xla_flags=os.environ.get("XLA_FLAGS", ""))


def write_result(record: dict, path: Path | None = None) -> Path:
    """Appends `record` as one JSON line to `path` (default `bench/results/fewjax_<platform>.jsonl`)."""
    if path is None:
        path = RESULTS / f"fewjax_{jax.devices()[0].platform}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return path
