"""Throughput and memory of fewjax's trainer step on the issue-6 workloads; one JSON line per workload.

    PYTHONPATH=. python bench/throughput.py --workload W1 --steps 3
    PYTHONPATH=. python bench/throughput.py --workload all --steps 2

W1-W4: the trainer's jitted, donated step (`fewjax.train`) on random inputs of the peers' shapes; median wall
time of `--steps` timed steps after `--warmup` steps, each waiting for its loss. Memory: `xla_peak_mb` is XLA's
buffer assignment for one step (arguments + outputs + temporaries - donated aliases, from
`compiled.memory_analysis()`); `step_rss_delta_mb` is the process peak RSS during the steps (VmHWM reset after
compiling) minus the RSS before them; `peak_rss_mb` is the whole process's peak (compiler included).
W5: 600 seeded 1-shot Omniglot test episodes through `fewjax.eval.evaluate` (vmapped batches of at most 50),
5-way MAML (3 inner steps) and ProtoNet, then 20-way ProtoNet with the default memory bound and without one;
random (untrained) params, seconds end to end with compile included, and the peak RSS of each evaluation.
W6: XLA's planned memory of one second-order MAML step against inner steps (1, 5, 10, 20), with and without
remat (compiled, not executed).
Results are appended to `bench/results/fewjax_<platform>.jsonl` (or `--out`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `fewjax` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from fewjax.train.program_cost import program_cost  # noqa: E402

from bench.common import (WORKLOADS, build, compile_step, library_ops, machine, peak_rss_mb,  # noqa: E402
                          reset_peak_rss, rss_mb, summarize, time_steps, trainer_config, versions, write_result,
                          xla_memory)

ALL = ("W1", "W2", "W3", "W4", "W5", "W6")
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


def bench_step(name: str, *, steps: int, warmup: int, tasks: int | None = None, remat: bool = False,
               overrides: dict | None = None) -> dict:
    """W1-W4: compile, then time the trainer's step."""
    cfg = WORKLOADS[name]
    run = build(cfg, tasks=tasks if cfg["kind"] == "maml" else None, remat=remat, overrides=overrides)
    compiled, compile_s = compile_step(run)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    before = rss_mb()
    reset = reset_peak_rss()
    losses: list[float] = []
    times, _ = time_steps(compiled, run.state, run.batches, warmup=warmup, timed=steps, losses=losses)
    rec = dict(impl="fewjax (trainer step)", workload=name, tasks=run.tasks, **summarize(times, run.tasks),
               warmup=warmup, compile_s=round(compile_s, 2), **xla_memory(compiled),
               step_rss_delta_mb=round(peak_rss_mb() - before, 1) if reset and before else None,
               peak_rss_mb=round(peak_rss_mb() or 0.0, 1), xla_cost_gflop=round(flops / 1e9, 2),
               gflop_per_task=gflop_per_task(compiled, run),
               losses=losses, library_ops=library_ops(compiled), remat=remat, task_loop=run.config.task_loop,
               chunk_size=run.chunk_size, conv_grad=run.config.model.conv_grad)
    return rec


def gflop_per_task(compiled, run) -> float | None:
    """One task's GFLOP: the step's FLOPs with every loop body counted by its trip count
    (`fewjax.train.program_cost`; XLA's `cost_analysis()` counts a loop body once, so it undercounts the scan
    over tasks and the inner steps), divided by the tasks in the step. None where a loop's trip count is unknown,
    or where the step calls a math library whose FLOPs the HLO does not show (cuDNN and cuBLAS on a GPU): the
    workload's FLOPs do not depend on the device, so bench/side_by_side.py then takes the CPU-compiled count.
    """
    cost = program_cost(compiled.as_text())
    if cost.unknown_trip_counts or cost.library_calls or not cost.flops:
        return None
    return round(cost.flops / 1e9 / run.tasks, 2)


W5_CASES = {"maml_5w": ("maml", 5, True, "max"), "maml_5w_stride": ("maml", 5, True, "stride"),
            "protonet_5w": ("protonet", 5, True, "max"), "protonet_20w": ("protonet", 20, True, "max"),
            "protonet_20w_unbounded": ("protonet", 20, False, "max")}
"""W5's evaluations: (method, ways, with the default memory bound, conv4's pooling). `maml_5w` is W1's max-pool
conv4 (the PyTorch peers' network); `maml_5w_stride` Finn et al.'s Omniglot network, which the MAML presets train."""


def bench_eval(*, episodes: int = 600, batch_size: int = 50, overrides: dict | None = None,
               cases: tuple[str, ...] = tuple(W5_CASES)) -> list[dict]:
    """W5: seconds to evaluate `episodes` test episodes, compile included: 5-way 1-shot MAML and ProtoNet, then
    20-way 1-shot ProtoNet with the default memory bound and without one (peak RSS of each evaluation alone);
    `cases` picks some of them (`W5_CASES`)."""
    from fewjax.data import episodes as make_episodes
    from fewjax.data import omniglot
    from fewjax.eval.evaluate import EVAL_MEMORY_MB, evaluate
    from fewjax.methods import build_method

    t0 = time.perf_counter()
    data_dir = SHARED / "data" / "omniglot"
    source = omniglot("test", data_dir=data_dir, download=False, progress=False)
    load_s = time.perf_counter() - t0
    out = []
    for case in cases:
        method_name, ways, bounded, pool = W5_CASES[case]
        memory_mb = EVAL_MEMORY_MB if bounded else 1e9
        sampler = make_episodes(source, ways=ways, shots=1, queries=15, seed=0)
        c = trainer_config(WORKLOADS["W1" if method_name == "maml" else "W4"], overrides=overrides)
        c.test_ways, c.test_shots, c.test_queries, c.eval_inner_steps = ways, 1, 15, 3
        c.model.pool = pool
        method = build_method(c)
        params = method.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
        before, reset = rss_mb(), reset_peak_rss()
        start = time.perf_counter()
        result = evaluate(method.evaluate, params, sampler, num_episodes=episodes, batch_size=batch_size,
                          memory_mb=memory_mb)
        seconds = time.perf_counter() - start
        out.append(dict(impl="fewjax (fewjax.eval.evaluate)", workload="W5", case=case, pool=pool,
                        method=method_name, ways=ways,
                        episodes=result["episodes"], batch_size=result["batch_size"],
                        memory_mb=memory_mb if memory_mb < 1e9 else None, seconds=round(seconds, 2),
                        episodes_per_s=round(result["episodes"] / seconds, 2),
                        inner_steps=3 if method_name == "maml" else None,
                        accuracy_untrained=round(result["accuracy"], 4), omniglot_load_s=round(load_s, 2),
                        eval_peak_rss_mb=round(peak_rss_mb(), 1) if reset else None,
                        rss_before_mb=round(before, 1) if before else None,
                        peak_rss_mb=round(peak_rss_mb() or 0.0, 1),
                        notes="compile included; Omniglot decode (omniglot_load_s) excluded; eval_peak_rss_mb: "
                              "the process's peak RSS during this evaluation (VmHWM reset before it)"))
    return out


def bench_memory(*, inner_steps=(1, 5, 10, 20), tasks: int | None = None, overrides: dict | None = None) -> list[dict]:
    """W6: XLA's planned bytes of one second-order MAML step (W2 shapes) per inner-step count, remat off/on."""
    out = []
    for n in inner_steps:
        row = {}
        for remat in (False, True):
            cfg = dict(WORKLOADS["W2"], inner_steps=n)
            run = build(cfg, tasks=tasks, remat=remat, num_batches=1, overrides=overrides)
            compiled, compile_s = compile_step(run)
            row[remat] = dict(**xla_memory(compiled), compile_s=round(compile_s, 2))
            loop = dict(task_loop=run.config.task_loop, chunk_size=run.chunk_size)
            del run, compiled
        out.append(dict(impl="fewjax (trainer step)", workload="W6", inner_steps=n,
                        tasks=tasks or WORKLOADS["W2"]["tasks"],
                        xla_peak_mb_no_remat=row[False]["xla_peak_mb"], xla_peak_mb_remat=row[True]["xla_peak_mb"],
                        remat_ratio=round(row[True]["xla_peak_mb"] / row[False]["xla_peak_mb"], 3),
                        compile_s_no_remat=row[False]["compile_s"], compile_s_remat=row[True]["compile_s"],
                        **loop,
                        notes="compiled, not executed: XLA buffer assignment (args + outputs + temps - aliases)"))
    return out


def run_workload(name: str, *, steps: int, warmup: int, tasks: int | None = None,
                 overrides: dict | None = None, w5_cases: tuple[str, ...] = tuple(W5_CASES)) -> list[dict]:
    if name in ("W1", "W2", "W3", "W4"):
        recs = [bench_step(name, steps=steps, warmup=warmup, tasks=tasks, overrides=overrides)]
    elif name == "W5":
        recs = bench_eval(overrides=overrides, cases=w5_cases)
    elif name == "W6":
        recs = bench_memory(tasks=tasks, overrides=overrides)
    else:
        raise ValueError(f"unknown workload {name!r}; choose one of {ALL} or 'all'.")
    common = dict(**machine(), versions=versions(), time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                  overrides=overrides or {})
    return [dict(r, **common) for r in recs]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", required=True, help=f"one of {', '.join(ALL)}, a comma list, or 'all'")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (W1-W4)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling (W1-W4)")
    ap.add_argument("--tasks", type=int, default=None, help="override the MAML meta-batch (W1-W3, W6; default 32)")
    ap.add_argument("--out", type=Path, default=None, help="JSONL file to append to")
    ap.add_argument("--no-save", action="store_true", help="print only")
    ap.add_argument("--w5", default=",".join(W5_CASES), help=f"W5's evaluations, a comma list of {list(W5_CASES)}")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="trainer config override, e.g. --set task_loop=vmap --set model.conv_grad=xla")
    args = ap.parse_args(argv)
    bad_sets = [kv for kv in args.set if "=" not in kv]
    if bad_sets:
        ap.error(f"--set takes KEY=VALUE; got {', '.join(bad_sets)}")
    args.overrides = dict(kv.split("=", 1) for kv in args.set)
    names = ALL if args.workload == "all" else tuple(w.strip() for w in args.workload.split(","))
    bad = [w for w in names if w not in ALL]
    if bad:
        ap.error(f"--workload {','.join(bad)} unknown; choose from {', '.join(ALL)} or 'all'")
    if args.steps < 1 or args.warmup < 0:
        ap.error(f"--steps must be >= 1 and --warmup >= 0; got {args.steps}, {args.warmup}")
    args.w5 = tuple(c.strip() for c in args.w5.split(","))
    if any(c not in W5_CASES for c in args.w5):
        ap.error(f"--w5 {','.join(args.w5)}: choose from {', '.join(W5_CASES)}")
    if args.tasks is not None and args.tasks < 1:
        ap.error(f"--tasks must be >= 1; got {args.tasks}")
    return args, names


def main(argv=None) -> list[dict]:
    args, names = parse_args(argv)
    records = []
    for name in names:
        for rec in run_workload(name, steps=args.steps, warmup=args.warmup, tasks=args.tasks,
                                overrides=args.overrides, w5_cases=args.w5):
            print(json.dumps(rec), flush=True)
            if not args.no_save:
                write_result(rec, args.out)
            records.append(rec)
    return records


if __name__ == "__main__":
    main()
