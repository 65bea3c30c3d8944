"""MAML++'s five changes one at a time on Omniglot 5-way 1-shot, at equal steps on this machine.

    PYTHONPATH=. python bench/mamlpp_ablation.py run [--steps 200] [--variants maml,msl,...] [--time-limit S]
    PYTHONPATH=. python bench/mamlpp_ablation.py table

Every variant is `configs/omniglot_mamlpp.py:5w1s` (meta-batch 8, 5 inner steps at 0.1, one query per class) for
`--steps` meta-steps with the paper's schedule scaled to that length (its 100 epochs become `steps / 100` meta-steps
each: the multi-step loss anneals over the first tenth, derivative-order annealing is first order for the first
half), trained in runs/mamlpp_ablation/VARIANT (the same command resumes) and scored on the same 600 test
episodes (15 queries per class, 5 inner steps; train.py's own test of the run's last checkpoint, which its one
validation at the end makes the best). "maml" is every switch off with a constant learning rate: plain
second-order MAML on the same tasks; each "+x" variant turns one change on; "mamlpp" (measured second) is the preset (all but
derivative-order annealing, which the reference code leaves off for Omniglot). One JSON line per variant goes to
bench/results/mamlpp_ablation.jsonl; `table` prints the README's table from it.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import ROOT, RUNS, append_record, comparison_main, read_records, train_and_test  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "mamlpp_ablation.jsonl"
OFF = {"mamlpp.multi_step_loss": False, "mamlpp.per_step_bn": False, "mamlpp.lslr": False,
       "mamlpp.first_order_epochs": 0, "optim.schedule": "constant"}
VARIANTS = {
    "maml": OFF,
    "mamlpp": {},
    "+multi_step_loss": {**OFF, "mamlpp.multi_step_loss": True},
    "+per_step_bn": {**OFF, "mamlpp.per_step_bn": True},
    "+lslr": {**OFF, "mamlpp.lslr": True},
    "+cosine": {**OFF, "optim.schedule": "cosine"},
    "+derivative_order_annealing": {**OFF, "mamlpp.first_order_epochs": 50},
}
"""Variant -> overrides of configs/omniglot_mamlpp.py:5w1s."""


def train_args(variant: str, steps: int) -> list[str]:
    every = max(steps // 100, 1)
    args = ["--config", "configs/omniglot_mamlpp.py:5w1s", f"--config.total_steps={steps}",
            f"--config.mamlpp.epoch_steps={every}", f"--config.eval_every={steps}",
            f"--config.checkpoint_every={max(steps // 4, 1)}", f"--config.log_every={max(steps // 20, 1)}",
            "--config.val_episodes=100"]
    return args + [f"--config.{k}={v}" for k, v in VARIANTS[variant].items()]


def run(variants: list[str], steps: int, time_limit: float | None) -> None:
    done = {(r["variant"], r["trained_steps"]) for r in read_records(RESULTS)}
    for variant in variants:
        if (variant, steps) in done:
            print(f"{variant}: measured at {steps} steps already (bench/results/mamlpp_ablation.jsonl)")
            continue
        record = train_and_test(RUNS / "mamlpp_ablation" / variant.lstrip("+"), train_args(variant, steps), steps,
                                time_limit=time_limit)
        record.update(variant=variant, overrides=VARIANTS[variant])
        append_record(RESULTS, record)



def table(path: Path = RESULTS) -> str:
    rows = read_records(path)
    if not rows:
        return "(no bench/results/mamlpp_ablation.jsonl yet: `PYTHONPATH=. python bench/mamlpp_ablation.py run`)"
    latest = {r["variant"]: r for r in rows}  # a variant measured again replaces its earlier row
    base = latest.get("maml")
    lines = ["| variant | 5w1s test accuracy (600 episodes) | vs MAML | steps | wall s/step | load | commit |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in [v for v in VARIANTS if v in latest]:
        r = latest[name]
        delta = f"{100 * (r['accuracy'] - base['accuracy']):+.2f}" if base and name != "maml" else ""
        lines.append(f"| {name} | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} | {delta} | "
                     f"{r['trained_steps']:,} | {r['seconds_per_step']:.2f} | {r['train_load_average']:.1f} | "
                     f"{r['commit']} |")
    lines.append("| MAML++ (published, 50,000 steps) | 99.47 ± 0.05 | | | | | |")
    return "\n".join(lines)


def main() -> None:
    comparison_main(__doc__, VARIANTS, lambda chosen, a: run(chosen, a.steps, a.time_limit), table)


if __name__ == "__main__":
    main()
