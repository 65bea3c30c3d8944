"""The SetFit library on fewjax's exported text test episodes (issue 17): the PyTorch peer of `method=setfit`.

Runs in its own virtualenv (torch + setfit; see README.md beside this file), never in fewjax's.

Run:   . /tmp/setfitpeer/venv/bin/activate
       python bench/peers_text/setfit_peer.py --episodes_file bench/results/episodes/clinc150_5w1s.jsonl \
           [--episodes N] [--budget_s S] [--out bench/results/setfit_peer.jsonl] [--model DIR] [--check]

The episodes file comes from `bench/export_text_episodes.py` (fewjax's venv): one JSON line per seeded test
episode, `{"support": [[text, label], ...], "query": [[text, label], ...], ...}`, exactly the episodes fewjax's
evaluation scores. For each of the first N episodes (in file order) a fresh `SetFitModel` is loaded from the local
all-MiniLM-L6-v2 folder (sentence-transformers layout: Transformer, mean Pooling, Normalize; a fresh
`LogisticRegression` head), trained on the support set with `setfit.Trainer` and the library defaults, and scored
on the queries. Defaults (setfit 1.x `TrainingArguments`, with the classic `num_iterations=20`, which is what the
deprecated `SetFitTrainer` and the library's examples use; setfit 1.x's own default without it is
`sampling_strategy="oversampling"`):
  num_iterations=20 (20 positive and 20 negative pairs per support sentence: 200 pairs = 13 steps for 5-way 1-shot,
  1000 pairs = 63 steps for 5-way 5-shot), batch_size 16, 1 epoch, body lr 2e-5 (AdamW, weight decay
  l2_weight=0.01, linear schedule with 10% warmup), CosineSimilarityLoss, then a scikit-learn LogisticRegression()
  head (C=1, lbfgs) on the trained body's embeddings; seed 42 for every episode (set by the trainer at the start of
  training); the model's own max_seq_length (256 for all-MiniLM-L6-v2; fewjax cuts CLINC150 at 32 tokens, which
  changes 1 utterance in 22,500, and FewRel at 64).

Reported as fewjax reports: accuracy = mean of per-episode query accuracies, ci95 = 1.96 * std / sqrt(n) (sample
std over episodes), and seconds per episode = trainer construction + training + prediction of the queries (model
loading excluded), with `torch.set_num_threads(2)`. One JSON line per run is appended to --out, with the per-episode
accuracies (in episode order, so it can be paired with fewjax's on the same episodes), library versions, the load
average and the hardware.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder; nothing is fetched
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FEWJAX_SHARED") or ROOT / ".." / "shared")
DEFAULT_MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
DEFAULT_OUT = ROOT / "bench" / "results" / "setfit_peer.jsonl"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes_file", required=True, help="JSONL from bench/export_text_episodes.py")
    p.add_argument("--episodes", type=int, default=None, help="the first N episodes of the file (default: all)")
    p.add_argument("--budget_s", type=float, default=None,
                   help="stop after the episode that passes this many seconds of wall time; the record says how "
                        "many of the first episodes were run")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="sentence-transformers folder (all-MiniLM-L6-v2)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSONL to append the run's record to ('-' = none)")
    p.add_argument("--seed", type=int, default=42, help="TrainingArguments.seed, the same for every episode")
    p.add_argument("--num_iterations", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--num_epochs", type=int, default=1)
    p.add_argument("--body_lr", type=float, default=2e-5)
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the model's (256)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--check", action="store_true",
                   help="first compare the loaded body's embeddings with the model folder's reference_outputs.npz")
    p.add_argument("--quiet", action="store_true", help="no per-episode lines on stderr")
    a = p.parse_args(argv)
    if a.episodes is not None and a.episodes < 1:
        p.error("--episodes must be >= 1")
    return a


def read_episodes(path, limit=None) -> list[dict]:
    episodes = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                episodes.append(json.loads(line))
    if not episodes:
        raise SystemExit(f"{path}: no episodes")
    return episodes if limit is None else episodes[:limit]


def summarize(accuracies: list[float]) -> dict:
    """fewjax's summary: mean, sample std and ci95 = 1.96 * std / sqrt(n) over episodes."""
    n = len(accuracies)
    std = statistics.stdev(accuracies) if n > 1 else 0.0
    return {"accuracy": statistics.fmean(accuracies), "ci95": 1.96 * std / n ** 0.5, "std": std, "episodes": n}


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("setfit", "sentence-transformers", "transformers", "torch", "scikit-learn", "datasets",
                 "accelerate", "tokenizers", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    model = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = None
    return {"cpu": model, "cpus": os.cpu_count(), "memory_gb": round(mem_gb, 1) if mem_gb else None,
            "machine": platform.machine(), "system": platform.system(), "device": "cpu"}


def check_embeddings(model_dir: Path, body) -> float | None:
    """Max abs difference between the body's embeddings and the folder's reference outputs (None if absent)."""
    import numpy as np

    ref = model_dir / "reference_outputs.npz"
    if not ref.is_file():
        return None
    d = np.load(ref)
    emb = body.encode([str(s) for s in d["sentences"]], convert_to_numpy=True, show_progress_bar=False)
    return float(np.abs(emb - d["sentence_embedding"]).max())


def main(argv=None) -> dict:
    a = parse_args(argv)
    import numpy as np
    import torch
    import transformers
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit import logging as setfit_logging

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    setfit_logging.set_verbosity_error()
    disable_progress_bar()
    torch.set_num_threads(a.threads)

    model_dir = Path(a.model)
    episodes = read_episodes(a.episodes_file)
    in_file = len(episodes)
    if a.episodes is not None:
        episodes = episodes[: a.episodes]
    preset = episodes[0].get("preset")
    load_start = os.getloadavg()
    start = time.perf_counter()

    def load():
        m = SetFitModel.from_pretrained(str(model_dir))
        if a.max_seq_length:
            m.model_body.max_seq_length = a.max_seq_length
        return m

    check = None
    if a.check:
        check = check_embeddings(model_dir, load().model_body)
        print(json.dumps({"check": "embeddings vs reference_outputs.npz", "max_abs_diff": check}), file=sys.stderr)

    accs, secs, load_secs = [], [], []
    steps = max_seq_length = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, ep in enumerate(episodes):
            t0 = time.perf_counter()
            model = load()
            max_seq_length = model.model_body.max_seq_length
            load_secs.append(time.perf_counter() - t0)
            s_text, s_label = [t for t, _ in ep["support"]], [int(y) for _, y in ep["support"]]
            q_text, q_label = [t for t, _ in ep["query"]], np.array([int(y) for _, y in ep["query"]])
            args = TrainingArguments(
                output_dir=tmp, batch_size=(a.batch_size, 2), num_epochs=(a.num_epochs, 16),
                num_iterations=a.num_iterations, body_learning_rate=(a.body_lr, 1e-5), seed=a.seed,
                report_to="none", save_strategy="no", logging_strategy="no", logging_first_step=False,
                show_progress_bar=False)
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its summary; stdout is the record
                trainer = Trainer(model=model, args=args,
                                  train_dataset=Dataset.from_dict({"text": s_text, "label": s_label}))
                trainer.train()
                pred = np.asarray(model.predict(q_text, show_progress_bar=False))
            secs.append(time.perf_counter() - t0)
            steps = trainer.st_trainer.state.global_step
            accs.append(float((pred.astype(np.int64) == q_label).mean()))
            if not a.quiet:
                print(f"episode {i}: accuracy {accs[-1]:.4f}  {secs[-1]:.1f} s  ({steps} steps)  "
                      f"running mean {statistics.fmean(accs):.4f}", file=sys.stderr, flush=True)
            del trainer, model
            if a.budget_s is not None and time.perf_counter() - start >= a.budget_s and i + 1 < len(episodes):
                print(f"budget of {a.budget_s:.0f} s reached after {i + 1} episodes", file=sys.stderr)
                break

    n = len(accs)
    summary = summarize(accs)
    record = {
        "bench": "setfit_peer",
        "impl": "setfit library (PyTorch)",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preset": preset,
        "episodes_file": os.path.relpath(os.path.abspath(a.episodes_file), ROOT),
        "episodes_in_file": in_file,
        "which_episodes": f"the first {n} of the exported {in_file} (episode {episodes[0].get('episode', 0)} "
                          f"to {episodes[n - 1].get('episode', n - 1)}, seed {episodes[0].get('seed')})",
        "ways": len({y for _, y in episodes[0]["support"]}),
        "support_per_episode": len(episodes[0]["support"]),
        "queries_per_episode": len(episodes[0]["query"]),
        **summary,
        "seconds_per_episode": statistics.fmean(secs),
        "seconds_per_episode_median": statistics.median(secs),
        "seconds_what": "Trainer construction + contrastive training + head fit + query prediction; "
                        "model loading excluded",
        "load_seconds_per_episode": statistics.fmean(load_secs),
        "wall_seconds": time.perf_counter() - start,
        "settings": {"num_iterations": a.num_iterations, "sampling": "num_iterations (pos/neg pairs per sentence)",
                     "batch_size": a.batch_size, "num_epochs": a.num_epochs, "body_lr": a.body_lr,
                     "optimizer": "AdamW, weight decay 0.01, linear schedule, warmup 10%",
                     "loss": "CosineSimilarityLoss", "head": "sklearn LogisticRegression() (C=1, lbfgs)",
                     "end_to_end": False, "seed": a.seed, "body_steps_per_episode": steps,
                     "max_seq_length": max_seq_length, "torch_threads": torch.get_num_threads()},
        "model": model_dir.name,
        "embedding_check_max_abs_diff": check,
        "versions": versions(),
        "hardware": hardware(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "per_episode_accuracy": [round(x, 6) for x in accs],
        "per_episode_seconds": [round(x, 2) for x in secs],
    }
    line = json.dumps(record)
    if a.out != "-":
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    print(json.dumps({k: record[k] for k in ("preset", "episodes", "accuracy", "ci95", "seconds_per_episode",
                                              "which_episodes", "loadavg_end")}))
    return record


if __name__ == "__main__":
    main()
