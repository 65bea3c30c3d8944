"""Where a trainer step's time goes: the XLA operations of a W1-W4 step ranked by time, from a `jax.profiler` trace.

    PYTHONPATH=. python bench/profile_step.py --workload W1 --tasks 4 [--top 25] [--config.task_loop=vmap ...]

Builds the same step as `bench/throughput.py` (the trainer's, on random inputs of the peers' shapes), runs it
twice to warm up, traces `--steps` steps, and prints the operations (XLA thunks on CPU, kernels on GPU) with the
most time per step, each with the op that JAX emitted it for (from the optimized HLO's metadata), and a total per
kind. The trace itself stays in `--trace_dir` for TensorBoard / Perfetto. `--set key=value` overrides the trainer
config (e.g. `--set task_loop=vmap --set model.conv_grad=xla` profiles the plain-JAX program).
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from bench.common import WORKLOADS, build, compile_step  # noqa: E402


def op_origins(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> the `op_name` of its metadata (which JAX primitive and module made it)."""
    origins = {}
    for m in re.finditer(r"%([\w.\-]+) = .*?op_name=\"([^\"]+)\"", hlo_text):
        origins.setdefault(m.group(1), m.group(2))
    return origins


def trace_events(trace_dir: Path) -> list[dict]:
    files = sorted(trace_dir.glob("**/*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"profile_step: no *.trace.json.gz under {trace_dir}; the profiler wrote nothing.")
    data = json.load(gzip.open(files[-1]))
    return data["traceEvents"] if isinstance(data, dict) else data


def rank(events: list[dict], steps: int, origins: dict[str, str], top: int) -> list[dict]:
    skip = ("ThunkExecutor", "$", "PjitFunction", "Execute")
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and "dur" in e and not name.startswith(skip):
            total[name] += e["dur"]
            count[name] += 1
    rows = []
    for name, us in total.most_common(top):
        origin = origins.get(name, "")
        rows.append(dict(op=name, ms_per_step=round(us / steps / 1e3, 3), calls_per_step=count[name] / steps,
                         origin=re.sub(r"^jit\(step\)/", "", origin)))
    kinds = collections.Counter()
    for name, us in total.items():
        kinds[re.sub(r"[.\d]+$", "", name)] += us
    return rows, {k: round(v / steps / 1e3, 2) for k, v in kinds.most_common(12)}


def text_step(length: int, model: str, data_dir: str):
    """The text ProtoNet step of bench/text_side_by_side.py (batch 64, `length` tokens), compiled, with its state."""
    from bench.text_side_by_side import FewjaxCase, episode_ids

    ids, support_y, query_y, preset = episode_ids(length, 64, model=model, data_dir=data_dir)
    case = FewjaxCase("protonet_step", ids, support_y, query_y, preset, model=model, data_dir=data_dir)
    return case.fn, case.state, [case.task], case.compile_s, 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="W1", choices=sorted(WORKLOADS) + ["text32", "text64"],
                    help="W1-W4, or text32/text64: one text ProtoNet step on MiniLM at that many tokens "
                         "(bench/text_side_by_side.py's episode and step)")
    shared = Path(__file__).resolve().parents[2] / "shared"
    ap.add_argument("--model", default=str(shared / "models" / "all-MiniLM-L6-v2"), help="text workloads")
    ap.add_argument("--data_dir", default=str(shared / "data"), help="text workloads")
    ap.add_argument("--tasks", type=int, default=4, help="MAML meta-batch (small keeps the trace small)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--trace_dir", type=Path, default=Path("/tmp/fewjax_profile"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="trainer config override")
    args = ap.parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    if args.workload.startswith("text"):
        compiled, state, batches, compile_s, tasks = text_step(int(args.workload[4:]), args.model, args.data_dir)
    else:
        cfg = WORKLOADS[args.workload]
        run = build(cfg, tasks=args.tasks if cfg["kind"] == "maml" else None, overrides=overrides)
        compiled, compile_s = compile_step(run)
        state, batches, tasks = run.state, run.batches, run.tasks
    for i in range(2):
        state, metrics = compiled(state, batches[i % len(batches)])
        jax.block_until_ready(metrics["loss"])
    with jax.profiler.trace(str(args.trace_dir), create_perfetto_trace=True):
        for i in range(args.steps):
            state, metrics = compiled(state, batches[i % len(batches)])
            jax.block_until_ready(metrics["loss"])
    rows, kinds = rank(trace_events(args.trace_dir), args.steps, op_origins(compiled.as_text()), args.top)
    print(f"# {args.workload}, {tasks} task(s), {args.steps} traced steps, compile {compile_s:.1f} s, "
          f"overrides {overrides or 'none'}; trace in {args.trace_dir}")
    print(f"{'ms/step':>9} {'calls':>6}  op  <- origin")
    for r in rows:
        print(f"{r['ms_per_step']:9.2f} {r['calls_per_step']:6.0f}  {r['op']}  <- {r['origin'][:110]}")
    print("# ms/step by kind:", json.dumps(kinds))


if __name__ == "__main__":
    main()
