"""Adaptive task sampling against uniform sampling at equal steps: Omniglot ProtoNet, tested 5-way 1-shot.

    PYTHONPATH=. python bench/adaptive_sampling.py run [--steps 200] [--variants uniform,adaptive] [--time-limit S]
    PYTHONPATH=. python bench/adaptive_sampling.py table

Every variant is `configs/omniglot_protonet.py:5w1s` with smaller training episodes for this CPU (20-way, 5 queries
per class, 2 episodes a step: 40 of the 4,112 training classes a step), trained for `--steps` steps in
runs/adaptive_sampling/VARIANT (the same command resumes) and scored on the same 600 test episodes (5-way 1-shot,
15 queries per class: train.py's own test of the run's last checkpoint, which its one validation at the end makes
the best). "uniform" draws the classes of a task uniformly (the default); "adaptive" draws them in proportion to a
moving average of the losses of the tasks they were in (`config.task_sampling="adaptive"`, the other keys at their
defaults: decay 0.9, temperature 1.0, floor 0.1; fewjax.data.task_sampling). Both draw their tasks from the same
seed. One JSON line per variant goes to bench/results/adaptive_sampling.jsonl, with the number of classes the
adaptive weights were worth at the end (`sampling_effective_classes`, exp of their entropy); `table` prints the
README's table from it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import ROOT, RUNS, append_record, comparison_main, read_records, train_and_test  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "adaptive_sampling.jsonl"
CONFIG = "configs/omniglot_protonet.py:5w1s"
SETTING = {"ways": 20, "queries": 5, "meta_batch_size": 2, "val_episodes": 100, "early_stop_patience": 0}
"""Overrides of CONFIG shared by every variant: training episodes a 2-core CPU takes a few hundred of in minutes."""
VARIANTS = {
    "uniform": {"task_sampling": "uniform"},
    "adaptive": {"task_sampling": "adaptive"},
}
"""Variant -> overrides of CONFIG (on top of SETTING)."""


def train_args(variant: str, steps: int) -> list[str]:
    args = ["--config", CONFIG, f"--config.total_steps={steps}", f"--config.eval_every={steps}",
            f"--config.checkpoint_every={max(steps // 2, 1)}", f"--config.log_every={max(steps // 20, 1)}"]
    return args + [f"--config.{k}={v}" for k, v in {**SETTING, **VARIANTS[variant]}.items()]


def last_effective_classes(workdir: Path) -> float | None:
    """The last logged `train/sampling_effective_classes` of a run (adaptive runs log it), else None."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    values = [r["train/sampling_effective_classes"] for r in rows if "train/sampling_effective_classes" in r]
    return round(values[-1], 1) if values else None


def run(variants: list[str], steps: int, time_limit: float | None) -> None:
    done = {(r["variant"], r["trained_steps"]) for r in read_records(RESULTS)}
    for variant in variants:
        if (variant, steps) in done:
            print(f"{variant}: measured at {steps} steps already (bench/results/adaptive_sampling.jsonl)")
            continue
        workdir = RUNS / "adaptive_sampling" / variant
        record = train_and_test(workdir, train_args(variant, steps), steps, time_limit=time_limit)
        record.update(variant=variant, overrides={**SETTING, **VARIANTS[variant]},
                      effective_classes=last_effective_classes(workdir))
        append_record(RESULTS, record)



def table(path: Path = RESULTS) -> str:
    rows = read_records(path)
    if not rows:
        return "(no bench/results/adaptive_sampling.jsonl yet: `PYTHONPATH=. python bench/adaptive_sampling.py run`)"
    latest = {(r["variant"], r["trained_steps"]): r for r in rows}  # measured again: its latest row
    lines = ["| variant | 5w1s test accuracy (600 episodes) | vs uniform | steps | effective classes at the end | "
             "wall s/step | load | commit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for steps in sorted({s for _, s in latest}):
        base = latest.get(("uniform", steps))
        for name in [v for v in VARIANTS if (v, steps) in latest]:
            r = latest[(name, steps)]
            delta = f"{100 * (r['accuracy'] - base['accuracy']):+.2f}" if base and name != "uniform" else ""
            effective = "" if r.get("effective_classes") is None else f"{r['effective_classes']:,.0f}"
            lines.append(f"| {name} | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} | {delta} | "
                         f"{r['trained_steps']:,} | {effective} | {r['seconds_per_step']:.2f} | "
                         f"{r['train_load_average']:.1f} | {r['commit']} |")
    return "\n".join(lines)


def main() -> None:
    comparison_main(__doc__, VARIANTS, lambda chosen, a: run(chosen, a.steps, a.time_limit), table)


if __name__ == "__main__":
    main()
