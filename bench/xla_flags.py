"""XLA:CPU's library options for convolutions and dots, measured on the trainer's step (issue 15).

    PYTHONPATH=. python bench/xla_flags.py --workloads W4,W1 --rounds 3 --steps 3

Each variant is one set of `XLA_FLAGS`; every (round, workload, variant) is a fresh `bench/throughput.py` process,
and the variants take turns within a round, so a change in the machine's load falls on all of them alike. A row
gives the median over rounds of each process's median step time, the ratio to the default flags measured in the
same rounds, GFLOP/s and the fraction of the float32 GEMM peak (`bench/peak.py`, measured first), and whether the
first step's loss equals the default's (a flag that speeds a step up by changing its numbers is no gain).
Records are appended to `bench/results/xla_flags.jsonl`; the table is printed and written next to them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reproduce import commit  # noqa: E402
from bench.side_by_side import first_loss_agrees, measure_peak, throughput_record  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

VARIANTS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "ynn off (Eigen)": "--xla_cpu_experimental_ynn_fusion_type=",
    "ynn all fusions": "--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution,eltwise,reduce",
    "xnn dot+eltwise": "--xla_cpu_use_xnnpack=true --xla_cpu_experimental_xnn_fusion_type=dot,eltwise",
}


def _median_step(recs: list[dict]) -> float:
    return statistics.median(r["median_step_s"] for r in recs)


def summarize(runs: dict, peak: float | None) -> list[dict]:
    """One row per (workload, variant) from `runs[(workload, variant)] = [record per round]`."""
    rows = []
    for (workload, variant), recs in runs.items():
        ok = [r for r in recs if "error" not in r]
        if not ok:
            rows.append(dict(workload=workload, variant=variant, error=recs[-1]["error"]))
            continue
        step = _median_step(ok)
        base = [r for r in runs.get((workload, "default"), []) if "error" not in r]
        per_task = ok[0].get("gflop_per_task")  # exact only where XLA counts the whole step (W1, W4)
        flops = per_task * ok[0]["tasks"] if per_task else None
        gflops = flops / step if flops else None
        rows.append(dict(
            records=ok, workload=workload, variant=variant, flags=VARIANTS[variant], rounds=len(ok),
            median_step_s=round(step, 4),
            speedup_vs_default=round(_median_step(base) / step, 3) if base else None, gflop_per_step=flops,
            gflops=round(gflops, 1) if gflops else None,
            percent_of_gemm_peak=round(100 * gflops / peak, 1) if gflops and peak else None,
            losses_equal_default=(all(first_loss_agrees(r["losses"], base[0]["losses"]) for r in ok)
                                  if base else None),
            program_as_default=ok[0].get("library_ops") == base[0].get("library_ops") if base else None,
            library_ops=ok[0].get("library_ops"), step_times=[r["median_step_s"] for r in ok]))
    return rows


def _ops(row: dict) -> str:
    ops = ", ".join(f"{k.strip('(')} x{v}" for k, v in (row.get("library_ops") or {}).items())
    return ops + ("" if row["program_as_default"] or row["variant"] == "default" else " (changed)")


def markdown(rows: list[dict], meta: dict) -> str:
    head = (f"Run {meta['time']} on {meta['cpus']}-core CPU, commit {meta['commit']}; load average before/after: "
            f"{meta['load_before']} / {meta['load_after']}; float32 GEMM peak in the same run: "
            f"{meta['peak_gflops']} GFLOP/s; {meta['rounds']} rounds x {meta['steps']} timed steps.\n\n")
    lines = ["| workload | variant | median step s | vs default | GFLOP/s | % of GEMM peak | first loss as default "
             "| library ops in the program |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['workload']} | {r['variant']} | {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['workload']} | {r['variant']} | {r['median_step_s']} | {r['speedup_vs_default']}x | "
                     f"{r['gflops']} | {r['percent_of_gemm_peak']} | {r['losses_equal_default']} | {_ops(r)} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="W4,W1")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {list(VARIANTS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "xla_flags.jsonl")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "default" not in variants:
        ap.error(f"--variants must include 'default' and name only {list(VARIANTS)}; got {unknown or variants}")
    workloads = [w.strip() for w in args.workloads.split(",")]
    load_before = [round(x, 2) for x in os.getloadavg()]
    peak = measure_peak(args.timeout)
    runs: dict = {}
    for rnd in range(args.rounds):
        for w in workloads:
            for v in variants:
                rec = throughput_record(HERE.parent, w, steps=args.steps, timeout=args.timeout,
                                        env={"XLA_FLAGS": VARIANTS[v]})
                runs.setdefault((w, v), []).append(rec)
                print(f"round {rnd + 1} {w} {v}: {rec.get('median_step_s', rec.get('error'))}", flush=True)
    meta = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S"), cpus=os.cpu_count(), commit=commit(),
                load_before=load_before, load_after=[round(x, 2) for x in os.getloadavg()], peak_gflops=peak,
                rounds=args.rounds, steps=args.steps)
    rows = summarize(runs, peak)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        for r in rows:
            f.write(json.dumps(dict(r, **meta)) + "\n")
    table = markdown(rows, meta)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return rows


if __name__ == "__main__":
    main()
