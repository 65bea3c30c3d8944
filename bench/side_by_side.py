"""fewjax against the PyTorch peers, on the same machine, in one run; ratios per workload.

    PYTHONPATH=. python bench/side_by_side.py --torch-python /work/venv-torch/bin/python
    PYTHONPATH=. python bench/side_by_side.py --torch-python ... --workloads W1,W4 --steps 2
    PYTHONPATH=. python bench/side_by_side.py --table-only   # regenerate the tables from side_by_side.json

Every (implementation, workload) runs in its own process, one after another (never two at once), so peak RSS is
per workload and the processes do not fight over the 2 cores; fewjax runs first within each workload. The peers
(`../shared/bench/peers/bench_*.py`) run unmodified; a small wrapper around their `common.time_steps` adds the
same RSS-delta measurement fewjax reports (peak RSS during the steps minus the RSS before them).

First it measures the machine's float32 GEMM peak (`bench/peak.py`), so every row says how far it is from the
limit: GFLOP per task is counted from fewjax's compiled step, every loop body as often as it runs
(`fewjax.train.program_cost`; the peers run the same workload, so the same FLOPs), and "% of GEMM peak" is tasks/s
x GFLOP per task over that peak.

Writes `bench/results/side_by_side.json` (every record), `bench/results/side_by_side.md` (the table) and the
table between the markers in `bench/README.md`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = ROOT / ".." / "shared" / "bench" / "peers"
RESULTS = HERE / "results"
MAML_IMPLS = ("torchfunc", "torch_loop", "higher", "l2l")
BEGIN, END = "<!-- side-by-side:begin -->", "<!-- side-by-side:end -->"

# Runs a peer script unmodified; wraps common.time_steps to report the step RSS delta as one extra JSON line.
PEER_WRAPPER = r"""
import json, os, runpy, sys
from pathlib import Path
script, args = sys.argv[1], sys.argv[2:]
sys.path.insert(0, str(Path(script).parent))
import common
def _kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return float(line.split()[1])
_orig = common.time_steps
def time_steps(*a, **k):
    before = _kb("VmRSS")
    try:
        open("/proc/self/clear_refs", "w").write("5")
        ok = True
    except OSError:
        ok = False
    out = _orig(*a, **k)
    print(json.dumps({"_rss": True, "step_rss_delta_mb": round((_kb("VmHWM") - before) / 1024, 1) if ok else None,
                      "rss_before_steps_mb": round(before / 1024, 1)}), flush=True)
    return out
common.time_steps = time_steps
if os.environ.get("PEER_DEVICE"):  # e.g. cuda: the peers create their tensors and modules on the default device
    import torch
    torch.set_default_device(os.environ["PEER_DEVICE"])
    class Generator(torch.Generator):  # the peers seed torch.Generator() for data made on the default device
        def __new__(cls, device=None):
            return torch._C.Generator(device or os.environ["PEER_DEVICE"])
    torch.Generator = Generator
sys.argv = [script] + args
runpy.run_path(script, run_name="__main__")
"""


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def throughput_record(tree: Path, workload: str, *, steps: int, timeout: float, tasks: int | None = None,
                      env: dict | None = None) -> dict:
    """One `bench/throughput.py` run of `workload` from the checkout `tree`, in its own process (with `env` added
    to the environment): its record, or `{"error": ...}`."""
    cmd = [sys.executable, str(tree / "bench" / "throughput.py"), "--workload", workload, "--steps", str(steps),
           "--no-save", *(["--tasks", str(tasks)] if tasks else [])]
    try:
        p = subprocess.run(cmd, cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree), **(env or {})),
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout:.0f} s")
    recs = [d for d in _json_lines(p.stdout) if "median_step_s" in d]
    if p.returncode or not recs:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [""]
        return dict(error=f"exit {p.returncode}: {tail[0][:300]}")
    return recs[-1]


def first_loss_agrees(losses: list[float], reference: list[float], rtol: float = 1e-5) -> bool:
    """Whether the first step's loss (at the same parameters on both sides) agrees to float32 rounding; later steps
    start from parameters that rounding has already moved apart, so they are not judged."""
    return abs(losses[0] - reference[0]) <= rtol * max(abs(reference[0]), 1e-12)


PLAIN_JAX = ("task_loop=vmap", "model.conv_grad=xla")  # the program without the CPU paths (bench/README.md)


def run_fewjax(workload: str, *, steps: int, warmup: int, timeout: float, overrides=()) -> dict:
    cmd = [sys.executable, str(HERE / "throughput.py"), "--workload", workload, "--steps", str(steps),
           "--warmup", str(warmup), "--no-save"] + [a for kv in overrides for a in ("--set", kv)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    impl = "fewjax (trainer step)" + (f" [{', '.join(overrides)}]" if overrides else "")
    return _run(cmd, env=env, cwd=ROOT, timeout=timeout, impl=impl, workload=workload)


def run_peer(python: str, impl: str, workload: str, *, steps: int, warmup: int, timeout: float,
             peers: Path = PEERS) -> dict:
    script = peers / ("bench_protonet.py" if workload == "W4" else f"bench_{impl}.py")
    args = ["--warmup", str(warmup), "--timed", str(steps)]
    if workload != "W4":
        args = ["--workload", workload] + args
    cmd = [python, "-c", PEER_WRAPPER, str(script.resolve())] + args
    return _run(cmd, env=dict(os.environ), cwd=peers.resolve(), timeout=timeout, impl=impl, workload=workload)


def _run(cmd, *, env, cwd, timeout, impl, workload) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(impl=impl, workload=workload, error=f"timed out after {timeout:.0f} s")
    lines = _json_lines(p.stdout)
    extra = {k: v for d in lines if d.get("_rss") for k, v in d.items() if k != "_rss"}
    main = [d for d in lines if not d.get("_rss") and "workload" in d]
    if p.returncode != 0 or not main:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [""]
        return dict(impl=impl, workload=workload, error=f"exit {p.returncode}: {tail[0][:300]}")
    rec = dict(main[-1], **extra)
    rec["impl"] = impl if rec["impl"].startswith("fewjax") else rec["impl"]
    rec["process_wall_s"] = round(time.perf_counter() - t0, 1)
    return rec


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or "unknown": the sessions' machines are not all the same kind."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def measure_peak(timeout: float, results: Path = RESULTS) -> float | None:
    """This machine's float32 GEMM GFLOP/s now (bench/peak.py in its own process, its record in `results`), or None
    if it failed."""
    out = results / "peak_side_by_side.json"
    cmd = [sys.executable, str(HERE / "peak.py"), "--repeats", "5", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    lines = [d for d in _json_lines(p.stdout) if "gflops_best" in d]
    return lines[0]["gflops_best"] if p.returncode == 0 and lines else None


def _percent_of_peak(tasks_per_s: float, gflop_per_task: float | None, peak: float | None) -> float | None:
    if not gflop_per_task or not peak:
        return None
    return round(100 * tasks_per_s * gflop_per_task / peak, 1)


def recorded_gflop(record: dict) -> float | None:
    """A fewjax record's GFLOP per task, None where its step called a math library whose FLOPs its HLO hides (a GPU
    step's cuDNN / cuBLAS custom-calls; records written before bench/throughput.py said so show them in
    `library_ops`)."""
    return None if record.get("library_ops", {}).get("custom-call(") else record.get("gflop_per_task")


def cpu_counted_gflop(path: Path = RESULTS / "side_by_side.json") -> dict[str, float]:
    """{workload: GFLOP per task} counted on a CPU-compiled step (`path`, a CPU run of this script): the workloads'
    FLOPs do not depend on the device, and the CPU program shows all of them."""
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    if str(doc.get("meta", {}).get("machine", "")).startswith("gpu"):
        return {}
    return {r["workload"]: r["gflop_per_task"] for r in doc["records"]
            if r.get("impl") == "fewjax (trainer step)" and recorded_gflop(r)}


def workload_gflop(record: dict, workload: str, fallback: dict[str, float] | None) -> tuple[float | None, bool]:
    """(GFLOP per task, whether it is `fallback`'s CPU count): the record's own count where it has one."""
    own = recorded_gflop(record)
    if own is None and workload in (fallback or {}):
        return fallback[workload], True
    return own, False


def gflop_cell(gflop: float | None, counted_on_cpu: bool) -> str:
    """A table cell for GFLOP per task: "-" when unknown, "(CPU count)" after a count taken from the CPU step."""
    return ("-" if gflop is None else str(gflop)) + (" (CPU count)" if counted_on_cpu else "")


def ratios(records: list[dict], peak_gflops: float | None = None,
           fallback_gflop: dict[str, float] | None = None) -> list[dict]:
    """Per workload: fewjax tasks/s over the fastest peer's, GFLOP per task and the fraction of the GEMM peak each
    reaches, and the memory figures side by side. A workload whose own count is unknown takes `fallback_gflop`'s
    (`cpu_counted_gflop()`), and its row says so."""
    rows = []
    for w in sorted({r["workload"] for r in records}):
        ours = [r for r in records if r["workload"] == w and r["impl"] == "fewjax (trainer step)" and "error" not in r]
        peers = [r for r in records if r["workload"] == w and not r["impl"].startswith("fewjax") and "error" not in r]
        if not ours or not peers:
            continue
        f = ours[0]
        best = max(peers, key=lambda r: r["tasks_per_s"])
        gflop, counted_on_cpu = workload_gflop(f, w, fallback_gflop)  # loops counted by trip count (throughput.py)
        rows.append(dict(
            gflop_per_task=gflop, gflop_counted_on_cpu=counted_on_cpu, fewjax_percent_of_peak=_percent_of_peak(f["tasks_per_s"], gflop, peak_gflops),
            peer_percent_of_peak=_percent_of_peak(best["tasks_per_s"], gflop, peak_gflops),
            workload=w, fewjax_tasks_per_s=f["tasks_per_s"], fastest_peer=best["impl"],
            peer_tasks_per_s=best["tasks_per_s"], speedup=round(f["tasks_per_s"] / best["tasks_per_s"], 3),
            fewjax_xla_peak_mb=f.get("xla_peak_mb"), fewjax_step_rss_delta_mb=f.get("step_rss_delta_mb"),
            fewjax_peak_rss_mb=f.get("peak_rss_mb"), peer_step_rss_delta_mb=best.get("step_rss_delta_mb"),
            peer_peak_rss_mb=best.get("peak_rss_mb"), fewjax_compile_s=f.get("compile_s")))
    return rows


def markdown(records: list[dict], rows: list[dict], meta: dict) -> str:
    peak = meta.get("gemm_peak_gflops")
    out = [f"Run {meta.get('time', '?')} on {meta.get('machine', '?')}; load average before/after: "
           f"{meta.get('load_before')} / {meta.get('load_after')}; timed steps {meta.get('steps')} "
           f"(+{meta.get('warmup')} warm-up); float32 GEMM peak measured in the same run: "
           f"{f'{peak} GFLOP/s' if peak else 'not measured'}.", "",
           "| workload | fewjax tasks/s | fastest peer | peer tasks/s | fewjax / peer | GFLOP / task | "
           "fewjax % of GEMM peak | peer % of GEMM peak | fewjax XLA peak MB | "
           "fewjax step RSS delta MB | peer step RSS delta MB | fewjax peak RSS MB | peer peak RSS MB |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    if any(r.get("gflop_counted_on_cpu") for r in rows):
        out[1:1] = ["", "GFLOP / task marked (CPU count) is counted on the CPU-compiled step "
                    "(bench/results/side_by_side.json): this device's step calls cuDNN / cuBLAS, whose FLOPs its HLO "
                    "does not show, and the workload's FLOPs do not depend on the device."]
    dash = lambda v: "-" if v is None else v  # noqa: E731
    for r in rows:
        gflop = gflop_cell(r.get("gflop_per_task"), r.get("gflop_counted_on_cpu", False))
        out.append(f"| {r['workload']} | {r['fewjax_tasks_per_s']} | {r['fastest_peer']} | {r['peer_tasks_per_s']} | "
                   f"**{r['speedup']}x** | {gflop} | {dash(r.get('fewjax_percent_of_peak'))} | "
                   f"{dash(r.get('peer_percent_of_peak'))} | {r['fewjax_xla_peak_mb']} | {r['fewjax_step_rss_delta_mb']} | "
                   f"{r['peer_step_rss_delta_mb']} | {r['fewjax_peak_rss_mb']} | {r['peer_peak_rss_mb']} |")
    out += ["", "All runs:", "", "| impl | workload | tasks/s | median step s | step RSS delta MB | peak RSS MB | note |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        if "error" in r:
            out.append(f"| {r['impl']} | {r['workload']} | - | - | - | - | {r['error']} |")
        else:
            note = f"compile {r['compile_s']} s" if "compile_s" in r else r.get("notes", "")
            out.append(f"| {r['impl']} | {r['workload']} | {r['tasks_per_s']} | {r.get('median_step_s')} | "
                       f"{r.get('step_rss_delta_mb')} | {r.get('peak_rss_mb')} | {note} |")
    return "\n".join(out) + "\n"


def write_tables(doc: dict, results: Path = RESULTS) -> str:
    """side_by_side.md in `results`; the bench/README.md table too when `results` is bench/results."""
    md = markdown(doc["records"], doc["ratios"], doc["meta"])
    (results / "side_by_side.md").write_text(md)
    readme = HERE / "README.md"
    if readme.exists() and results.resolve() == RESULTS.resolve():
        text = readme.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            readme.write_text(head + BEGIN + "\n" + md + END + tail)
    return md


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch-python", default="/work/venv-torch/bin/python", help="python with torch for the peers")
    ap.add_argument("--workloads", default="W1,W2,W3,W4")
    ap.add_argument("--impls", default=",".join(MAML_IMPLS), help="MAML peers to try (W4 uses bench_protonet)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per (impl, workload)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per process before it is abandoned")
    ap.add_argument("--table-only", action="store_true", help="rebuild the tables from side_by_side.json")
    ap.add_argument("--peers", type=Path, default=PEERS, help="folder of the PyTorch peer scripts")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for side_by_side.json/.md (bench/README.md's "
                    "table is rewritten only for the default)")
    ap.add_argument("--plain-jax", default="", help="workloads (comma list) to also run as the plain vmapped "
                    f"JAX program ({', '.join(PLAIN_JAX)}), for the before/after figure")
    args = ap.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in workloads if w not in ("W1", "W2", "W3", "W4")]
    if bad:
        ap.error(f"--workloads {bad} unknown; the peers implement W1, W2, W3, W4")
    if args.steps < 1 or args.warmup < 0:
        ap.error(f"--steps must be >= 1 and --warmup >= 0; got {args.steps}, {args.warmup}")
    if not args.table_only and not (Path(args.torch_python).exists() or shutil.which(args.torch_python)):
        ap.error(f"--torch-python {args.torch_python} does not exist; create it with `python3 -m venv "
                 "/work/venv-torch && /work/venv-torch/bin/pip install torch==2.13.0 numpy`")
    return args, workloads


def main(argv=None) -> dict:
    args, workloads = parse_args(argv)
    results = args.out
    results.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        doc = json.loads((results / "side_by_side.json").read_text())
        for r in doc["records"]:  # runs before the label carried the overrides
            if r.get("impl", "").startswith("fewjax") and r.get("overrides") and "[" not in r["impl"]:
                r["impl"] = "fewjax (trainer step) [" + ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) + "]"
        doc["ratios"] = ratios(doc["records"], doc["meta"].get("gemm_peak_gflops"), cpu_counted_gflop())
        print(write_tables(doc, results))
        return doc
    meta = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S"), load_before=[round(x, 2) for x in os.getloadavg()],
                steps=args.steps, warmup=args.warmup, cpus=os.cpu_count(),
                machine=os.environ.get("BENCH_MACHINE",
                                       f"{os.cpu_count()}-core CPU ({os.uname().machine}, {cpu_model()})"),
                torch_python=args.torch_python, peer_device=os.environ.get("PEER_DEVICE", "cpu"))
    print("== float32 GEMM peak", file=sys.stderr, flush=True)
    meta["gemm_peak_gflops"] = measure_peak(args.timeout, results)
    records = []
    for w in workloads:
        todo = [("fewjax", None)] + ([("plain", None)] if w in args.plain_jax.split(",") else [])
        todo += [("peer", "protonet")] if w == "W4" else [("peer", i) for i in args.impls.split(",") if i]
        for kind, impl in todo:
            print(f"== {w} {impl or kind}", file=sys.stderr, flush=True)
            if kind in ("fewjax", "plain"):
                rec = run_fewjax(w, steps=args.steps, warmup=args.warmup, timeout=args.timeout,
                                 overrides=PLAIN_JAX if kind == "plain" else ())
            else:
                rec = run_peer(args.torch_python, impl, w, steps=args.steps, warmup=args.warmup,
                               timeout=args.timeout, peers=args.peers)
            rec["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            print(json.dumps(rec), flush=True)
            records.append(rec)
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    rows = ratios(records, meta["gemm_peak_gflops"], cpu_counted_gflop())
    for r in rows:
        print(f"{r['workload']}: fewjax {r['fewjax_tasks_per_s']} tasks/s vs {r['fastest_peer']} "
              f"{r['peer_tasks_per_s']} tasks/s -> {r['speedup']}x; {r['gflop_per_task']} GFLOP/task, fewjax "
              f"{r['fewjax_percent_of_peak']}% of the {meta['gemm_peak_gflops']} GFLOP/s GEMM peak", flush=True)
    doc = dict(meta=meta, records=records, ratios=rows)
    (results / "side_by_side.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_tables(doc, results)
    return doc


if __name__ == "__main__":
    main()
