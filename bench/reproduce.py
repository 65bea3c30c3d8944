"""Reproduction runs of the published Omniglot table, and the README table generated from what they wrote.

    python bench/reproduce.py run NAME -- --config configs/omniglot_protonet.py:5w1s [--config.total_steps=...]
        trains in runs/NAME (resuming if present), then evaluates the best checkpoint on 600 test episodes of every
        setting given with --eval (default: the config's own), and appends one JSON line per evaluation to
        bench/results/reproduction.jsonl: method, setting, accuracy, ci95, steps, wall seconds, hardware.
    python bench/reproduce.py table
        prints the markdown table (published vs fewjax) from bench/results/reproduction.jsonl;
        bench/readme_tables.py writes it (and the other result tables) into README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "reproduction.jsonl"
PUBLISHED = {  # DESIGN.md: Omniglot, Vinyals split
    "maml": {"5w1s": 98.7, "5w5s": 99.9, "20w1s": 95.8, "20w5s": 98.9},
    "fomaml": {"5w1s": 98.3, "5w5s": 99.2, "20w1s": 89.4, "20w5s": 97.9},
    "reptile": {"5w1s": 95.39, "5w5s": 98.90, "20w1s": 88.14, "20w5s": 96.65},
    "protonet": {"5w1s": 98.8, "5w5s": 99.7, "20w1s": 96.0, "20w5s": 98.9},
    "matching": {"5w1s": 98.1, "5w5s": 98.9, "20w1s": 93.8, "20w5s": 98.5},
}


def hardware() -> str:
    import jax

    dev = jax.devices()[0]
    return f"{dev.platform}:{getattr(dev, 'device_kind', '')} x{jax.device_count()} ({os.cpu_count()} host cores)"


def run(name: str, train_args: list[str], evals: list[str]) -> None:
    workdir = ROOT / "runs" / name
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.time()
    subprocess.run([sys.executable, "train.py", *train_args, "--workdir", str(workdir)], cwd=ROOT, env=env,
                   check=True)
    train_seconds = time.time() - start
    config = json.loads((workdir / "eval_test.json").read_text())
    for setting in evals or [f"{config['ways']}w{config['shots']}s"]:
        ways, shots = setting.rstrip("s").split("w")
        out = subprocess.run([sys.executable, "evaluate.py", "--workdir", str(workdir), "--ways", ways, "--shots",
                              shots, "--episodes", "600"], cwd=ROOT, env=env, check=True, capture_output=True,
                             text=True).stdout
        record = json.loads(out.strip().splitlines()[-1])
        record.update(run=name, setting=setting, train_args=train_args, train_wall_seconds=round(train_seconds, 1),
                      hardware=hardware(), load_average=os.getloadavg()[0], python=platform.python_version())
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record))


def table() -> str:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    lines = ["| method | setting | published | fewjax (600 episodes, 95% CI) | training steps | hardware | train wall time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        pub = PUBLISHED.get(r["method"], {}).get(r["setting"], "")
        lines.append(f"| {r['method']} | {r['setting']} | {pub} | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} | "
                     f"{r['step']} | {r['hardware']} | {r['train_wall_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("name")
    r.add_argument("--eval", action="append", default=[], help="test settings, e.g. 5w1s (repeatable)")
    sub.add_parser("table")
    argv = sys.argv[1:]
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if a.cmd == "run":
        run(a.name, train_args, a.eval)
    else:
        print(table())


if __name__ == "__main__":
    main()
