"""The summary table of a `bench/device_check.sh` run, from the records it wrote (never typed by hand).

    python bench/device_summary.py DIR      # DIR: $OUT of the device call, or bench/results/device_check

For W1-W4: fewjax's tasks/s, the fastest peer's, the ratio, and the achieved GFLOP/s as a fraction of the float32
matrix-product peak measured in the same run (bench/peak.py). GFLOP per task is the record's own count, or, where
the device's step calls a library that hides its FLOPs (cuDNN, cuBLAS), the CPU-compiled step's count
(bench/side_by_side.py's `cpu_counted_gflop`), marked "(CPU count)".
Then W5 (600 evaluation episodes) and the encoder forward. Missing pieces are said, not skipped silently.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import cpu_counted_gflop, gflop_cell, workload_gflop  # noqa: E402


def _load(path: Path):
    if not path.exists():
        return None
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def peak_gflops(directory: Path, dtype: str = "float32") -> float | None:
    for record in _load(directory / "peak.json") or []:
        if record.get("dtype") == dtype:
            return record["gflops_best"]
    return None


def workload_rows(directory: Path, peak: float | None) -> list[str]:
    side = _load(directory / "side_by_side.json") or {}
    records = side.get("records", []) + (_load(directory / "fewjax.jsonl") or [])
    lines = ["| workload | fewjax tasks/s | fastest peer | peer tasks/s | fewjax / peer | GFLOP per task | "
             "fraction of the f32 peak |", "| --- | --- | --- | --- | --- | --- | --- |"]
    cpu_counted = cpu_counted_gflop()
    for w in ("W1", "W2", "W3", "W4"):
        ours = [r for r in records if r.get("workload") == w and r.get("impl", "").startswith("fewjax (trainer step)")
                and "[" not in r.get("impl", "") and "tasks_per_s" in r]
        peers = [r for r in records if r.get("workload") == w and not r.get("impl", "").startswith("fewjax")
                 and "tasks_per_s" in r]
        if not ours:
            errors = [r.get("error") for r in records if r.get("workload") == w and "error" in r]
            lines.append(f"| {w} | {'; '.join(errors) or 'not run'} | | | | | |")
            continue
        f = ours[-1]
        best = max(peers, key=lambda r: r["tasks_per_s"]) if peers else None
        gflop, counted_on_cpu = workload_gflop(f, w, cpu_counted)
        fraction = f"{f['tasks_per_s'] * gflop / peak:.1%}" if gflop and peak else "n/a"
        ratio = f"{f['tasks_per_s'] / best['tasks_per_s']:.2f}x" if best else ""
        lines.append(f"| {w} | {f['tasks_per_s']} | {best['impl'] if best else 'none'} | "
                     f"{best['tasks_per_s'] if best else ''} | {ratio} | {gflop_cell(gflop, counted_on_cpu) if gflop else 'n/a'} | {fraction} |")
    return lines


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        raise SystemExit("usage: python bench/device_summary.py DIR (the folder device_check.sh wrote)")
    directory = Path(argv[0])
    env = _load(directory / "environment.json") or {}
    peak = peak_gflops(directory)
    bf16 = peak_gflops(directory, "bfloat16")
    lines = [f"device_check on {env.get('machine', '?')} (commit {env.get('commit', '?')}, quick={env.get('quick')})",
             "", f"matrix-product peak: float32 {peak or 'not measured'} GFLOP/s"
             + (f", bfloat16 {bf16} GFLOP/s" if bf16 else ""), ""]
    lines += workload_rows(directory, peak)
    w5 = [r for r in _load(directory / "fewjax.jsonl") or [] if r.get("workload") == "W5"]
    lines += ["", "W5 (600 test episodes, compile included): "
              + (json.dumps({k: v for k, v in w5[-1].items() if "second" in k or "episodes" in k}) if w5 else "not run")]
    text = _load(directory / "text_encoder.json")
    if text:
        cases = text if isinstance(text, list) else text.get("results", [text])
        lines += ["", "encoder forward: " + "; ".join(
            f"{c.get('dtype')} L={c.get('length')}: {c.get('sentences_per_s')} sentences/s" for c in cases)]
    steps = _load(directory / "steps.jsonl") or []
    failed = [s for s in steps if s.get("exit_code", 0) != 0 or "skipped" in s]
    if failed:
        lines += ["", "steps that failed or were skipped: " + json.dumps(failed)]
    out = "\n".join(lines)
    print(out)
    return out


if __name__ == "__main__":
    main()
