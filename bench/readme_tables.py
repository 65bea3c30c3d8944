"""Regenerates the README's result tables from the result files the benchmark runs wrote (never by hand).

    PYTHONPATH=. python bench/readme_tables.py

Sections (between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in README.md):
- reproduction: Omniglot, from bench/results/reproduction.jsonl (bench/reproduce.py run ...)
- lake: Lake's within-alphabet one-shot test, from the same file (records with "within_alphabet": true)
- text: few-shot text, every run, from bench/results/text_fewshot.jsonl (bench/text_fewshot.py)
- text_matrix: the same records at 600 episodes of 15 queries, one row per method, one column per dataset and
  setting
- data: sampler throughput, from bench/results/data_throughput.json (bench/data_throughput.py)
- imaml_memory: planned memory against inner steps, from bench/results/imaml_memory.jsonl (bench/imaml_memory.py)
- setfit: fewjax's SetFit-style method and frozen ProtoNet beside the SetFit library on the same exported episodes,
  from bench/results/setfit_side_by_side.jsonl and setfit_peer.jsonl (bench/peers_text/)
- imaml_accuracy: iMAML beside MAML at equal meta-steps, from bench/results/imaml_accuracy.jsonl
  (bench/imaml_accuracy.py)
- mamlpp_ablation: MAML++'s changes one at a time, from bench/results/mamlpp_ablation.jsonl
  (bench/mamlpp_ablation.py)
- text_side_by_side: the MiniLM forward and one text ProtoNet step against PyTorch + transformers, from
  bench/results/text_side_by_side.jsonl (bench/text_side_by_side.py)
- speed: W1-W4, fewjax's trainer step against the fastest PyTorch peer, from bench/results/side_by_side.json
  (bench/side_by_side.py); speed_gpu: the same on a GPU, from bench/results/gpu/side_by_side.json
- adaptive_sampling: adaptive task sampling against uniform at equal steps, from
  bench/results/adaptive_sampling.jsonl (bench/adaptive_sampling.py)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))

import adaptive_sampling  # noqa: E402
import imaml_accuracy  # noqa: E402
import mamlpp_ablation  # noqa: E402
import reproduce  # noqa: E402
import side_by_side  # noqa: E402
import text_side_by_side  # noqa: E402


def jsonl(name: str) -> list[dict]:
    path = RESULTS / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def text_table() -> str:
    from text_fewshot import table

    return table(jsonl("text_fewshot.jsonl"))


def text_matrix() -> str:
    from text_fewshot import matrix

    return matrix(jsonl("text_fewshot.jsonl"))


def data_table() -> str:
    path = RESULTS / "data_throughput.json"
    if not path.exists():
        return "(no data_throughput.json yet)"
    data = json.loads(path.read_text())
    rows = data if isinstance(data, list) else data.get("results", [data])
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))]
    out = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    out += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(out)


def imaml_memory_table() -> str:
    latest = {r["inner_steps"]: r for r in jsonl("imaml_memory.jsonl")}  # a count measured again: its newest row
    rows = [latest[n] for n in sorted(latest)]
    if not rows:
        return "(no imaml_memory.jsonl yet: `PYTHONPATH=. python bench/imaml_memory.py`)"
    out = ["| inner steps | iMAML (5 CG steps) | MAML, second order | MAML, second order + remat | load |",
           "| --- | --- | --- | --- | --- |"]
    out += [f"| {r['inner_steps']} | {r['imaml_mb']:.1f} MB | {r['maml_mb']:.1f} MB | {r['maml_remat_mb']:.1f} MB | "
            f"{r['load']:.1f} |" for r in rows]
    return "\n".join(out)


def setfit_table() -> str:
    peer = jsonl("setfit_peer.jsonl")
    ours = jsonl("setfit_side_by_side.jsonl")
    if not peer or not ours:
        return "(no setfit_peer.jsonl / setfit_side_by_side.jsonl yet: bench/peers_text/README.md)"
    out = ["| implementation | preset | episodes | accuracy (%) ± ci95 | s / episode | median s / episode | load |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in ours + peer:
        if "loadavg_start" in r:  # the peer's episodes are timed one by one, from the start load to the end load
            load = f"{r['loadavg_start'][0]:.1f} → {r['loadavg_end'][0]:.1f}"
        else:
            load = f"{float(r.get('load_average_1m', float('nan'))):.1f}"
        median = r.get("seconds_per_episode_median")
        out.append(f"| {r['impl']} | {r['preset']} | {r['episodes']} | {100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f} | "
                   f"{r['seconds_per_episode']:.1f} | {'' if median is None else f'{median:.1f}'} | {load} |")
    return "\n".join(out)


WORKLOAD_NAMES = {"W1": "W1 second-order MAML, 1 step, meta-batch 32", "W2": "W2 second-order MAML, 5 steps",
                  "W3": "W3 first-order MAML, 5 steps", "W4": "W4 ProtoNet 60-way 5-shot"}


def speed_table(path: Path = RESULTS / "side_by_side.json") -> str:
    if not path.exists():
        return f"(no {path.relative_to(ROOT)} yet: `PYTHONPATH=. python bench/side_by_side.py`)"
    doc = json.loads(path.read_text())
    meta = doc["meta"]
    doc["ratios"] = side_by_side.ratios(doc["records"], meta.get("gemm_peak_gflops"), side_by_side.cpu_counted_gflop())
    dash = lambda v: "-" if v is None else v  # noqa: E731
    out = ["| workload | fewjax tasks/s | fastest peer tasks/s | fewjax / peer | GFLOP / task | fewjax % of GEMM peak "
           "| peer % of GEMM peak | fewjax step RSS delta | peer's |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["ratios"]:
        out.append(f"| {WORKLOAD_NAMES.get(r['workload'], r['workload'])} | {r['fewjax_tasks_per_s']} | "
                   f"{r['peer_tasks_per_s']} ({r['fastest_peer']}) | **{r['speedup']}x** | "
                   f"{side_by_side.gflop_cell(r['gflop_per_task'], r.get('gflop_counted_on_cpu', False))} | "
                   f"{dash(r['fewjax_percent_of_peak'])} | {dash(r['peer_percent_of_peak'])} | "
                   f"{r['fewjax_step_rss_delta_mb']} MB | {r['peer_step_rss_delta_mb']} MB |")
    peak = meta.get("gemm_peak_gflops")
    out += ["", f"Run {meta.get('time')} on {meta.get('machine')}, load average {meta.get('load_before')} before and "
            f"{meta.get('load_after')} after; float32 GEMM peak in the same run: "
            f"{f'{peak} GFLOP/s' if peak else 'not measured'}; {meta.get('steps')} timed steps per process."]
    return "\n".join(out)


def replace(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text:
        raise ValueError(f"README.md lacks the markers {begin} ... {end}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, make in (("reproduction", reproduce.table), ("lake", reproduce.lake_table), ("text", text_table),
                       ("text_matrix", text_matrix), ("data", data_table), ("imaml_memory", imaml_memory_table),
                       ("imaml_accuracy", imaml_accuracy.table),
                       ("mamlpp_ablation", mamlpp_ablation.table), ("adaptive_sampling", adaptive_sampling.table),
                       ("text_side_by_side", text_side_by_side.table), ("speed", speed_table),
                       ("speed_gpu", lambda: speed_table(RESULTS / "gpu" / "side_by_side.json")),
                       ("setfit", setfit_table)):
        body = make()
        print(f"## {name}\n{body}\n")
        text = replace(text, name, body)
    readme.write_text(text)


if __name__ == "__main__":
    main()
