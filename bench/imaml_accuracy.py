"""iMAML beside second-order MAML on Omniglot 5-way 1-shot at equal meta-steps on this machine.

    PYTHONPATH=. python bench/imaml_accuracy.py run [--steps 200] [--meta-batch 8] [--time-limit S]
    PYTHONPATH=. python bench/imaml_accuracy.py table

Each method runs its own preset (`configs/omniglot_imaml.py:5w1s`: 16 proximal inner steps at 0.1, lambda 2, 5 CG
steps, stride-2 conv4; `configs/omniglot_maml.py:5w1s`: 1 inner step at 0.4, 3 at test, stride-2 conv4 since
2026-12-03, max-pool conv4 in the records before) for `--steps` meta-steps of `--meta-batch` tasks (both presets use
32; the CPU takes fewer), trained in runs/imaml_accuracy/METHOD (the same command resumes) and scored by train.py's
own test of its last checkpoint on the same 600 test episodes. One JSON line per method goes to
bench/results/imaml_accuracy.jsonl.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import ROOT, RUNS, append_record, comparison_main, read_records, train_and_test  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "imaml_accuracy.jsonl"
PRESETS = {"maml": "configs/omniglot_maml.py:5w1s", "imaml": "configs/omniglot_imaml.py:5w1s"}
PUBLISHED = {"maml": "98.7 (Finn et al. 2017, 60,000 steps)", "imaml": "99.50 ± 0.26 (Rajeswaran et al. 2019)"}


def train_args(method: str, steps: int, meta_batch: int) -> list[str]:
    return ["--config", PRESETS[method], f"--config.total_steps={steps}", f"--config.meta_batch_size={meta_batch}",
            f"--config.eval_every={steps}", f"--config.checkpoint_every={max(steps // 4, 1)}",
            f"--config.log_every={max(steps // 20, 1)}", "--config.val_episodes=100"]



def run(methods: list[str], steps: int, meta_batch: int, time_limit: float | None) -> None:
    done = {(r["variant"], r["trained_steps"], r["meta_batch_size"]) for r in read_records(RESULTS)}
    for method in methods:
        if (method, steps, meta_batch) in done:
            print(f"{method}: measured at {steps} steps of {meta_batch} tasks already ({RESULTS.name})")
            continue
        record = train_and_test(RUNS / "imaml_accuracy" / f"{method}_{steps}x{meta_batch}",
                                train_args(method, steps, meta_batch), steps, time_limit=time_limit)
        record.update(variant=method, meta_batch_size=meta_batch, preset=PRESETS[method])
        append_record(RESULTS, record)


def table(path: Path = RESULTS) -> str:
    rows = read_records(path)
    if not rows:
        return "(no bench/results/imaml_accuracy.jsonl yet: `PYTHONPATH=. python bench/imaml_accuracy.py run`)"
    lines = ["| method (preset) | 5w1s test accuracy (600 episodes) | meta-steps x tasks | wall s/step | load | "
             "published | commit |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['variant']} (`{r['preset']}`) | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} | "
                     f"{r['trained_steps']:,} x {r['meta_batch_size']} | {r['seconds_per_step']:.2f} | "
                     f"{r['train_load_average']:.1f} | {PUBLISHED[r['variant']]} | {r['commit']} |")
    return "\n".join(lines)


def main() -> None:
    comparison_main(__doc__, PRESETS, lambda chosen, a: run(chosen, a.steps, a.meta_batch, a.time_limit), table,
                    flag="methods", steps=200,
                    more=lambda p: p.add_argument("--meta-batch", type=int, default=8, help="tasks per meta-step"))


if __name__ == "__main__":
    main()
