"""The trainer step's speed at two versions of the code, side by side in one run (is a change faster?).

    PYTHONPATH=. python bench/compare_commits.py --base HEAD --workloads W4,W1 --rounds 3

`--base` (a commit) is checked out into a temporary git worktree; the other side is this working tree as it is
(uncommitted changes included). Every (round, workload, side) is a fresh `bench/throughput.py` process run from
its own tree, the two sides taking turns, so a change in the machine's load falls on both. A row gives each side's
median over rounds of its median step time, the ratio (base / this tree: above 1 means this tree is faster), and
whether the first step's loss agrees (the same parameters on both sides: a speed-up that changes the numbers is
reported as such, not hidden), with the largest relative difference of the later steps' losses.
Records are appended to `bench/results/compare_commits.jsonl`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reproduce import commit  # noqa: E402
from bench.side_by_side import first_loss_agrees, throughput_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "compare_commits.jsonl"


def compare(base: list[dict], head: list[dict], rtol: float = 1e-5) -> dict:
    """Medians, the ratio base/head and whether the losses agree, from each side's per-round records.

    The first step's loss is computed at the same parameters on both sides, so it must agree to float32 rounding
    (`rtol`); later steps start from parameters that rounding has already moved apart (second-order MAML amplifies
    that), so their largest relative difference is reported, not judged."""
    base_ok, head_ok = [r for r in base if "error" not in r], [r for r in head if "error" not in r]
    if not base_ok or not head_ok:
        return dict(error=(base + head)[-1].get("error", "no record"))
    b = statistics.median(r["median_step_s"] for r in base_ok)
    h = statistics.median(r["median_step_s"] for r in head_ok)
    bl, hl = base_ok[0].get("losses"), head_ok[0].get("losses")
    agree = drift = None
    if bl and hl and len(bl) == len(hl):
        agree = first_loss_agrees(hl, bl, rtol)
        drift = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(bl, hl))
    return dict(base_step_s=round(b, 4), head_step_s=round(h, 4), speedup=round(b / h, 3), first_loss_agrees=agree,
                max_loss_drift=drift,
                base_rounds=[r["median_step_s"] for r in base_ok], head_rounds=[r["median_step_s"] for r in head_ok],
                base_losses=bl, head_losses=hl)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="HEAD", help="the commit to compare this working tree with")
    ap.add_argument("--workloads", default="W4,W1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=None, help="MAML meta-batch (W1-W3; default the workload's)")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    if not base_rev:
        ap.error(f"--base {args.base!r} is not a commit of this repository")
    workloads = [w.strip() for w in args.workloads.split(",")]
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), base_rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for rnd in range(args.rounds):
                for w in workloads:
                    for side, tree in (("base", base_tree), ("head", ROOT)):
                        rec = throughput_record(tree, w, steps=args.steps, tasks=args.tasks, timeout=args.timeout)
                        runs.setdefault((w, side), []).append(rec)
                        print(f"round {rnd + 1} {w} {side}: {rec.get('median_step_s', rec.get('error'))}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, capture_output=True)
    meta = dict(bench="compare_commits", base=base_rev, head=commit(), time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                rounds=args.rounds, steps=args.steps, tasks=args.tasks, load_before=load_before,
                load_after=[round(x, 2) for x in os.getloadavg()], cpus=os.cpu_count())
    rows = [dict(workload=w, **compare(runs[(w, "base")], runs[(w, "head")]), **meta) for w in workloads]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    for r in rows:
        print(json.dumps({k: r.get(k) for k in ("workload", "base", "head", "base_step_s", "head_step_s", "speedup",
                                                "first_loss_agrees", "max_loss_drift", "error") if k in r}))
    return rows


if __name__ == "__main__":
    main()
