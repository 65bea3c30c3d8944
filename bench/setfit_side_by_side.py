"""fewjax's SetFit-style method and frozen ProtoNet beside the SetFit library, on the same first N test episodes.

    PYTHONPATH=. python bench/setfit_side_by_side.py --preset clinc150_5w1s --episodes 40 --budget_s 2400 \
        --torch_python /work/venv-torch/bin/python

1. Exports the preset's seeded test episodes as strings (`bench/export_text_episodes.py`) unless the file exists.
2. Runs the SetFit library on the first `--episodes` of them (`bench/peers_text/setfit_peer.py` in the torch venv,
   stopping early when `--budget_s` is spent; it appends its record to `bench/results/setfit_peer.jsonl`).
3. Runs fewjax on exactly the episodes the library finished: `train.py` with `configs/text_setfit.py:PRESET`
   (nothing meta-trained; each test episode fine-tunes the encoder on its support pairs, then fits the head) and
   `configs/text_protonet.py:PRESET` with `--config.total_steps=0` (frozen ProtoNet), each with
   `--config.test_episodes=n`, and appends one record per method to `bench/results/setfit_side_by_side.jsonl`
   with the command, the accuracy and 95% CI of train.py's own test, and seconds per episode (the whole test
   divided by the episodes, compile included).
The README section `setfit` is generated from both files (`bench/readme_tables.py`).
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

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reproduce import commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"
METHODS = {"fewjax setfit (SetFit-style)": ("configs/text_setfit.py", ["--config.eval_batch_size=1"]),
           "fewjax frozen ProtoNet": ("configs/text_protonet.py", ["--config.total_steps=0"])}


def export(preset: str) -> Path:
    path = RESULTS / "episodes" / f"{preset}.jsonl"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "export_text_episodes.py"), "--preset", preset],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    return path


def run_library(torch_python: str, episodes_file: Path, episodes: int, budget_s: float, out: Path) -> dict:
    """The SetFit library on the first `episodes` (fewer if the budget ends first); its record."""
    before = len(out.read_text().splitlines()) if out.exists() else 0
    subprocess.run([torch_python, str(ROOT / "bench" / "peers_text" / "setfit_peer.py"), "--episodes_file",
                    str(episodes_file), "--episodes", str(episodes), "--budget_s", str(budget_s), "--out", str(out),
                    "--quiet"], cwd=ROOT / "bench" / "peers_text", check=True)
    lines = out.read_text().splitlines()
    if len(lines) <= before:
        raise SystemExit(f"setfit_peer.py wrote no record to {out}")
    return json.loads(lines[-1])


def run_fewjax(impl: str, preset: str, episodes: int, *, model: str, data_dir: str) -> dict:
    config, extra = METHODS[impl]
    workdir = ROOT / "runs" / f"setfit_side_by_side_{Path(config).stem}_{preset}_{episodes}"
    shutil.rmtree(workdir, ignore_errors=True)
    args = ["train.py", "--config", f"{config}:{preset}", "--workdir", str(workdir.relative_to(ROOT)),
            f"--config.text.model={model}", f"--config.data_dir={data_dir}", f"--config.test_episodes={episodes}",
            *extra]
    start = os.getloadavg()[0]
    subprocess.run([sys.executable, *args], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    tested = json.loads((workdir / "eval_test.json").read_text())
    seconds = tested["seconds"] + tested.get("features_seconds", 0.0)  # frozen ProtoNet embeds the test set first
    return dict(bench="setfit_side_by_side", impl=impl, preset=preset,
                which_episodes=f"the first {episodes} of fewjax's 600 seeded test episodes (15 queries per class), "
                               "the peer's episodes",
                accuracy=tested["accuracy"], ci95=tested["ci95"], episodes=tested["episodes"],
                eval_seconds=round(seconds, 1), features_seconds=tested.get("features_seconds"),
                seconds_per_episode=round(seconds / tested["episodes"], 2),
                seconds_what="the whole evaluation / episodes, compile included (for frozen ProtoNet also embedding "
                             "every test sentence once, features_seconds, which more episodes would share)",
                command="python " + " ".join(args),
                load_average_1m=round(start, 2), load_average_end=round(os.getloadavg()[0], 2), commit=commit(),
                time=time.strftime("%Y-%m-%dT%H:%M:%S"))


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="clinc150_5w1s",
                   choices=["clinc150_5w1s", "clinc150_5w5s", "fewrel_5w1s", "fewrel_5w5s"])
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--budget_s", type=float, default=2400.0, help="the library's time budget")
    p.add_argument("--torch_python", default="/work/venv-torch/bin/python", help="python with setfit installed")
    p.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--data_dir", default=str(SHARED / "data"))
    p.add_argument("--out", type=Path, default=RESULTS / "setfit_side_by_side.jsonl")
    a = p.parse_args(argv)
    if a.episodes < 2:
        p.error(f"--episodes must be at least 2 for a confidence interval; got {a.episodes}")
    if not Path(a.torch_python).exists():
        p.error(f"--torch_python {a.torch_python} does not exist: install the peer (bench/peers_text/README.md)")
    library = run_library(a.torch_python, export(a.preset), a.episodes, a.budget_s, RESULTS / "setfit_peer.jsonl")
    n = library["episodes"]
    records = [run_fewjax(impl, a.preset, n, model=a.model, data_dir=a.data_dir) for impl in METHODS]
    with a.out.open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    for r in [library, *records]:
        print(f"{r['impl']:32s} {r['episodes']:4d} episodes  {100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}  "
              f"{r['seconds_per_episode']:.1f} s/episode")
    return records


if __name__ == "__main__":
    main()
