"""Learning curves of reproduction runs: the measured rows kept in the repository, and PNG plots made from them.

    python bench/curves.py record NAME [NAME ...]   # runs/NAME/metrics.jsonl -> bench/results/curves/NAME.jsonl
    python bench/curves.py plot [NAME ...]          # bench/results/curves/NAME.jsonl -> docs/curves/NAME.png
    python bench/curves.py compare OUT NAME=LABEL [NAME=LABEL ...]   # validation curves together -> docs/curves/OUT.png

`record` keeps every validation row and the training loss every `--every` steps (runs/ is never committed, the
curves are), with the run's segments (steps, seconds, load average, commit of each resumed invocation).
`plot` draws training loss and validation accuracy against steps, with the published test accuracy of the run's
method and setting as a dashed line (validation and test classes differ, so the line is a landmark, not a target
the validation curve must reach). With no NAME it plots every recorded curve. `compare` draws the validation curves
of several recorded runs on one axes, each with its label (an ablation: the same method with one thing changed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT / "bench" / "results" / "curves"
PLOTS = ROOT / "docs" / "curves"
sys.path.insert(0, str(ROOT / "bench"))

from reproduce import PUBLISHED, RESULTS, read_records  # noqa: E402


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def record(name: str, *, runs: Path = ROOT / "runs", every: int = 50, out: Path = CURVES) -> Path:
    """Copies the curve of runs/NAME into out/NAME.jsonl: a header row, then one row per kept step."""
    workdir = runs / name
    rows = _jsonl(workdir / "metrics.jsonl")
    if not rows:
        raise SystemExit(f"{workdir / 'metrics.jsonl'} is missing or empty: train first (bench/reproduce.py run)")
    config = _config(workdir)
    kept = sorted((r for r in rows if any(k.startswith("val/") for k in r) or r["step"] % every == 0),
                  key=lambda r: r["step"])
    header = {"run": name, "method": config.get("method"), "ways": config.get("ways"),
              "shots": config.get("shots"), "test_ways": config.get("test_ways"),
              "test_shots": config.get("test_shots"), "split": config.get("split"),
              "within_alphabet": config.get("within_alphabet", False),
              "segments": _jsonl(workdir / "segments.jsonl")}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [header, *kept]) + "\n")
    return path


def _config(workdir: Path) -> dict:
    """The config the run saved with its newest checkpoint (no arrays are read)."""
    from fewjax.experiment.checkpoint import Checkpoints

    if not (workdir / "checkpoints").is_dir():
        return {}
    with Checkpoints(workdir / "checkpoints", read_only=True) as ckpts:
        return ckpts.read_config()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hardware(run: str) -> str:
    """The machine that trained `run`, as its latest record in bench/results/reproduction.jsonl names it."""
    named = [r["hardware"] for r in read_records(RESULTS) if r.get("run") == run and r.get("hardware")]
    if not named:
        return "this machine"
    platform, _, rest = named[-1].partition(":")  # "gpu:NVIDIA H200 x1 (16 host cores)", "cpu:cpu x1 (2 host cores)"
    if platform == "cpu":
        return f"a {rest.partition('(')[2].split()[0]}-core CPU" if "(" in rest else "a CPU"
    return rest.split(" x")[0]


def _published(header: dict, setting: str):
    """The published test accuracy of the run's method and setting; None off the Vinyals split (the published
    table is that split's)."""
    if header.get("split", "vinyals") != "vinyals":
        return None
    return PUBLISHED.get(header.get("method"), {}).get(setting)


def _save(fig, out: Path, name: str) -> Path:
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def plot(name: str, *, curves: Path = CURVES, out: Path = PLOTS) -> Path:
    """Writes out/NAME.png from curves/NAME.jsonl."""
    plt = _pyplot()
    header, *rows = _jsonl(curves / f"{name}.jsonl")
    train = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    val_key = next((k for r in rows for k in r if k.startswith("val/val_")), None)
    val = [(r["step"], r[val_key]) for r in rows if val_key in r]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        ax_loss.plot(*zip(*train), lw=1)
    ax_loss.set(xlabel="training step (episodes)", ylabel="training loss", yscale="log", title="training loss")
    setting = f"{header.get('test_ways')}w{header.get('test_shots')}s"
    if val:
        steps, values = zip(*val)
        scale = 100 if "accuracy" in val_key else 1
        ax_val.plot(steps, [scale * v for v in values], marker=".", label=f"fewjax validation ({setting})")
    published = _published(header, setting)
    if published is not None:
        ax_val.axhline(published, ls="--", color="gray", label=f"published test {setting}: {published}")
    ax_val.set(xlabel="training step (episodes)", ylabel=val_key or "validation", title="validation")
    ax_val.legend(loc="lower right", fontsize=8)
    seconds = sum(s.get("seconds", 0) for s in header.get("segments", []))
    last = max((r["step"] for r in rows), default=0)
    fig.suptitle(f"{name}: {header.get('method')}, trained {header.get('ways')}-way {header.get('shots')}-shot, "
                 f"{last} steps, {seconds / 3600:.1f} h on {_hardware(name)}", fontsize=10)
    return _save(fig, out, name)


def compare(out_name: str, labelled: dict[str, str], *, curves: Path = CURVES, out: Path = PLOTS) -> Path:
    """Writes out/OUT_NAME.png: the validation accuracy of each run in `labelled` ({name: label}) against steps."""
    fig, ax = _pyplot().subplots(figsize=(6.5, 4))
    published = None
    for name, label in labelled.items():
        if not (curves / f"{name}.jsonl").exists():
            raise FileNotFoundError(f"no recorded curve {curves / name}.jsonl: run `bench/curves.py record {name}`")
        header, *rows = _jsonl(curves / f"{name}.jsonl")
        val = [(r["step"], 100 * r["val/val_accuracy"]) for r in rows if "val/val_accuracy" in r]
        ax.plot(*zip(*val), marker=".", label=label)
        setting = f"{header.get('test_ways')}w{header.get('test_shots')}s"
        published = published or (setting, _published(header, setting))
    if published and published[1] is not None:
        ax.axhline(published[1], ls="--", color="gray", label=f"published test {published[0]}: {published[1]}")
    ax.set(xlabel="training step", ylabel="validation accuracy (%)", title=out_name)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out, out_name)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("names", nargs="+")
    r.add_argument("--every", type=int, default=50, help="keep the training loss every this many steps")
    pl = sub.add_parser("plot")
    pl.add_argument("names", nargs="*")
    co = sub.add_parser("compare")
    co.add_argument("out")
    co.add_argument("runs", nargs="+", help="NAME=LABEL")
    a = p.parse_args(argv)
    if a.cmd == "record":
        for name in a.names:
            print(record(name, every=a.every))
    elif a.cmd == "compare":
        pairs = [run.partition("=") for run in a.runs]
        if any(not name or not label for name, _, label in pairs):
            p.error("compare: write each run as NAME=LABEL")
        print(compare(a.out, {name: label for name, _, label in pairs}))
    else:
        for name in a.names or sorted(p.stem for p in CURVES.glob("*.jsonl")):
            print(plot(name))


if __name__ == "__main__":
    main()
