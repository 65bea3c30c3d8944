"""Few-shot text benchmark: each method through `fewjax.train.train_and_evaluate` on CLINC150 and FewRel.

Run:   PYTHONPATH=. python bench/text_fewshot.py [--steps 30] [--episodes 100] [--test_queries 5]
           [--settings clinc150_5w1s,fewrel_5w1s,clinc150_5w5s] [--methods frozen,protonet,anil,fomaml,finetune]

Methods: `frozen` (ProtoNet on the pretrained encoder, total_steps=0: the baseline), `protonet` (meta-trained end
to end), `anil`, `fomaml`, `finetune` (per-episode fine-tuning, no meta-training),
`setfit` (SetFit-style per-episode contrastive fine-tuning and a logistic head; configs/text_setfit.py),
`setfit_meta` (the same after ProtoNet meta-training of the encoder for --steps; `setfit_meta_prototype` with the
nearest-class-mean head, `text.setfit_head=prototype`), `prompt` / `prompt_random` /
`prompt_meta` (prompt tuning of the frozen encoder per episode from a vocabulary, random or, after --steps of
first-order MAML over the training classes, meta-learned start; configs/text_prompt.py), `frozen_names` (the
frozen baseline with each class's name as one more support example, `text.label_names`), `frozen_filter` (the
frozen baseline with near-duplicate support examples dropped, `text.support_filter=--support_filter`), any method
with the suffix `_to_fewrel` (trained on the preset's dataset, then scored on FewRel's test relations, as
`evaluate.py --dataset fewrel` does, at FewRel's 64 tokens), `protonet_adaptive` (`protonet` with adaptive
task sampling, `task_sampling=adaptive`), `protonet_names` (`protonet` with the class names as support examples, in
meta-training and test), `distill` (the encoder's first 2 layers
distilled from all 6 on the training episodes; configs/text_distill.py), each from its configs/text_*.py
preset with the schedule shortened for a 2-core CPU (--steps, --meta_batch_size, --episodes, --test_queries;
FOMAML uses --fomaml_inner_steps inner steps). Every row goes to bench/results/text_fewshot.jsonl as it finishes
(with the 1-minute load average, since the machine is shared); at the end a markdown table is printed with each
meta-trained method's accuracy difference from the frozen baseline of the same setting (unseen test classes,
the same seeded test episodes).

Long columns (600 SetFit episodes of 5-shot FewRel take hours on a CPU) can be run in pieces: each method and
setting runs in its own workdir under --workdirs, and its test keeps the per-episode scores in --progress_dir
(`config.test_resume_file`, `fewjax.evaluate`'s resume_file) after every batch of --eval_batch_size episodes. A run
stopped by a signal or a session's end continues from the last scored batch when the same command runs again, even
in a new checkout (the scores are kept under the parameters' content, and training is deterministic); the record
gives the episodes read back (resumed_episodes) and the test's seconds summed over the pieces. The workdir is
removed once its record is written (--keep_workdirs keeps it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fewjax.eval.workdir import evaluate_workdir  # noqa: E402
from fewjax.train import train_and_evaluate  # noqa: E402
from bench.reproduce import commit, preset_config  # noqa: E402

SHARED = Path(os.environ.get("FEWJAX_SHARED", ROOT / ".." / "shared"))
CONFIG_OF = {"frozen": "text_protonet", "protonet": "text_protonet", "anil": "text_maml", "fomaml": "text_maml",
             "finetune": "text_finetune", "distill": "text_distill", "setfit": "text_setfit",
             "setfit_meta": "text_setfit", "setfit_meta_prototype": "text_setfit",
             "prompt": "text_prompt", "prompt_random": "text_prompt",
             "prompt_meta": "text_prompt", "frozen_names": "text_protonet", "frozen_filter": "text_protonet",
             "protonet_adaptive": "text_protonet", "protonet_names": "text_protonet"}
CROSS = "_to_fewrel"
ADAPTS_PER_EPISODE = ("anil", "fomaml", "finetune", "setfit", "prompt")  # config.method values with test-time steps
ZERO_STEP = ("frozen", "frozen_names", "frozen_filter", "finetune", "setfit", "prompt", "prompt_random")


def load_config(method: str, preset: str, args=None):
    """`method`'s preset config (without the `_to_fewrel` suffix: the training side)."""
    c = preset_config(CONFIG_OF[method], preset)
    if method == "fomaml":
        c.method = "fomaml"
    if method == "prompt_random":
        c.text.prompt_init = "random"
    if method in ("frozen_names", "protonet_names"):
        c.text.label_names = True
    if method == "setfit_meta_prototype":
        c.text.setfit_head = "prototype"
    if method == "frozen_filter":
        c.text.support_filter = args.support_filter
    if method == "protonet_adaptive":
        c.task_sampling = "adaptive"
    return c


def run_one(method: str, preset: str, args) -> dict:
    base = method.removesuffix(CROSS)
    c = load_config(base, preset, args)
    c.text.model, c.data_dir = args.model, args.data_dir
    c.test_episodes, c.test_queries, c.eval_batch_size = args.episodes, args.test_queries, args.eval_batch_size
    c.meta_batch_size = args.meta_batch_size
    steps = 0 if base in ZERO_STEP else args.fomaml_steps if base == "fomaml" else args.steps
    if base == "fomaml":
        c.inner_steps = c.eval_inner_steps = args.fomaml_inner_steps
    c.total_steps = steps
    c.log_every = c.eval_every = c.checkpoint_every = max(steps, 1)
    c.val_episodes = args.val_episodes
    cross = method.endswith(CROSS)
    if cross:  # train_and_evaluate's own test (in-domain) is not the figure: keep it short
        c.test_episodes = c.eval_batch_size
    name = f"{method}_{preset}_{steps}steps_{args.episodes}x{args.test_queries}"
    workdir = Path(args.workdirs) / name
    if not cross:  # the scores so far outlive the workdir: a later session continues them
        Path(args.progress_dir).mkdir(parents=True, exist_ok=True)
        c.test_resume_file = str(Path(args.progress_dir) / f"{name}.npz")
    start = time.perf_counter()
    record = train_and_evaluate(c, workdir, progress=True)  # bars on stderr: a column takes an hour
    if "interrupted_at_step" in record:  # the checkpoint and scores so far stay: the same command continues
        print(f"{name}: stopped by signal {record['signal']} at step {record['interrupted_at_step']}; run the same "
              "command again to continue", file=sys.stderr)
        sys.exit(128 + record["signal"])
    train_seconds = (time.perf_counter() - start - (record["seconds"] - record["resumed_seconds"])
                     - record.get("features_seconds", 0))
    resumed = record["resumed_episodes"]
    if cross:
        record = evaluate_workdir(SimpleNamespace(
            workdir=workdir, checkpoint="best", split="test", episodes=args.episodes,
            batch_size=c.eval_batch_size, dataset="fewrel", max_length=None, data=None, ema=False), save=False)
        resumed = record["resumed_episodes"]
    if not args.keep_workdirs:
        shutil.rmtree(workdir)
    return {"bench": "text_fewshot", "method": method, "dataset": c.dataset + (CROSS if cross else ""),
            "setting": preset.split("_")[1],
            "accuracy": record["accuracy"], "ci95": record["ci95"], "episodes": record["episodes"],
            "test_queries": c.test_queries, "train_steps": steps, "meta_batch_size": c.meta_batch_size,
            "inner_steps": c.inner_steps if c.method in ("anil", "fomaml") else None,
            "support_filter": c.text.support_filter or None,
            "eval_inner_steps": c.eval_inner_steps if c.method in ADAPTS_PER_EPISODE else None,
            "train_seconds": round(train_seconds, 1), "resumed_episodes": resumed,
            "eval_seconds": round(record["seconds"] + record.get("features_seconds", 0), 1),
            "model": Path(args.model).name, "max_length": record["max_length"],
            "backend": jax.default_backend(),
            "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2), "commit": commit()}


def table(rows: list[dict]) -> str:
    """One row per record; "vs frozen ProtoNet" compares with the frozen baseline scored on the same episodes (same
    target dataset, setting, episode count and queries), so rows of different sizes are never set side by side."""
    same = lambda r: (r["dataset"].rpartition("_to_")[2], r["setting"], r["episodes"], r.get("test_queries"))  # noqa: E731
    base = {same(r): r["accuracy"] for r in rows if r["method"] == "frozen"}
    out = ["| method | dataset | setting | episodes x queries | accuracy (%) ± ci95 | vs frozen ProtoNet | train s | "
           "eval s | load |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r.get("bench") != "text_fewshot":
            continue
        b = base.get(same(r))
        diff = "" if b is None or r["method"] == "frozen" else f"{100 * (r['accuracy'] - b):+.1f}"
        method = r["method"] + (f" ({r['support_filter']})" if r.get("support_filter") else "")
        out.append(f"| {method} | {r['dataset'].replace('_to_', ' → ')} | {r['setting']} | {r['episodes']} x "
                   f"{r.get('test_queries', '?')} | {100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f} | {diff} | "
                   f"{r['train_seconds']} | {r['eval_seconds']} | {r['loadavg_1m']} |")
    return "\n".join(out)


MATRIX_COLUMNS = [("clinc150", "5w1s"), ("clinc150", "5w5s"), ("fewrel", "5w1s"), ("fewrel", "5w5s"),
                  ("clinc150_to_fewrel", "5w1s"), ("clinc150_to_fewrel", "5w5s")]
"""The issue's columns: each dataset's two settings, and CLINC150-trained methods scored on FewRel's relations."""


def matrix(rows: list[dict], *, episodes: int = 600, queries: int = 15) -> str:
    """One row per method, one column per (dataset, setting) of `MATRIX_COLUMNS`, from the records of `episodes`
    test episodes of `queries` queries (the newest record of each cell); each cell gives accuracy ± ci95 and, in
    brackets, its difference from frozen ProtoNet on the same episodes (a cross column: frozen ProtoNet on FewRel)."""
    cells = {}
    for r in rows:
        if r.get("bench") == "text_fewshot" and r["episodes"] == episodes and r.get("test_queries") == queries:
            cells[(r["method"].removesuffix(CROSS), r["dataset"], r["setting"])] = r
    methods = list(dict.fromkeys(m for m, _, _ in cells))
    out = ["| method | " + " | ".join(f"{d.replace('_to_', ' → ')} {s}" for d, s in MATRIX_COLUMNS) + " |",
           "| --- |" + " --- |" * len(MATRIX_COLUMNS)]
    for method in methods:
        line = []
        for dataset, setting in MATRIX_COLUMNS:
            r = cells.get((method, dataset, setting))
            frozen = cells.get(("frozen", dataset.rpartition("_to_")[2], setting))
            if r is None:
                line.append("")
                continue
            diff = "" if frozen is None or r is frozen else f" ({100 * (r['accuracy'] - frozen['accuracy']):+.1f})"
            line.append(f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}{diff}")
        out.append(f"| {method} | " + " | ".join(line) + " |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--data_dir", default=str(SHARED / "data"))
    p.add_argument("--settings", default="clinc150_5w1s,fewrel_5w1s,clinc150_5w5s")
    p.add_argument("--methods", default="frozen,protonet,anil,finetune,fomaml")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--fomaml_steps", type=int, default=10)
    p.add_argument("--fomaml_inner_steps", type=int, default=3)
    p.add_argument("--meta_batch_size", type=int, default=2)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--test_queries", type=int, default=5)
    p.add_argument("--val_episodes", type=int, default=10)
    p.add_argument("--eval_batch_size", type=int, default=10)
    p.add_argument("--support_filter", type=float, default=0.95, help="frozen_filter's text.support_filter")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "text_fewshot.jsonl"))
    p.add_argument("--workdirs", default=str(ROOT / "runs" / "text_fewshot"),
                   help="each method and setting trains and tests in WORKDIRS/<method>_<setting>_...; a run cut short "
                   "(a signal, a session's end) continues there when the same command runs again, its test from the "
                   "last scored batch")
    p.add_argument("--keep_workdirs", action="store_true", help="keep each workdir after its record is written")
    p.add_argument("--progress_dir", default=str(ROOT / "bench" / "results" / "text_fewshot_progress"),
                   help="each test's per-episode scores, kept as they are scored (config.test_resume_file): committed, "
                   "they let a later session continue a column, and give paired comparisons of methods on the same "
                   "episodes")
    args = p.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for preset in args.settings.split(","):
        for method in args.methods.split(","):
            r = run_one(method, preset, args)
            rows.append(r)
            with open(out, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
