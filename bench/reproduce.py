"""Reproduction runs of the published Omniglot table, and the README table generated from what they wrote.

    python bench/reproduce.py run NAME -- --config configs/omniglot_protonet.py:5w1s [--config.total_steps=...]
        trains in runs/NAME (resuming if present), then evaluates the best checkpoint on 600 test episodes
        (--episodes) of every setting given with --eval (default: the config's own; --queries: queries per class
        other than the config's test_queries), and appends one JSON line per evaluation to
        bench/results/reproduction.jsonl: method, setting, accuracy, ci95, steps, the fraction of the published
        schedule, wall seconds summed over every resumed segment (runs/NAME/segments.jsonl: steps, seconds, load
        average and commit of each invocation), hardware and commit. A run cut short (session end, SIGTERM) is
        continued by the same command.
    python bench/reproduce.py table
        prints the markdown table (published vs fewjax) from bench/results/reproduction.jsonl;
        bench/readme_tables.py writes it (and the other result tables) into README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "reproduction.jsonl"
RUNS = ROOT / "runs"
CURVES = ROOT / "docs" / "curves"
PUBLISHED = {  # DESIGN.md: Omniglot, Vinyals split
    "maml": {"5w1s": 98.7, "5w5s": 99.9, "20w1s": 95.8, "20w5s": 98.9},
    "fomaml": {"5w1s": 98.3, "5w5s": 99.2, "20w1s": 89.4, "20w5s": 97.9},
    "reptile": {"5w1s": 97.68, "5w5s": 99.48, "20w1s": 89.43, "20w5s": 97.12},  # transductive
    "protonet": {"5w1s": 98.8, "5w5s": 99.7, "20w1s": 96.0, "20w5s": 98.9},
    "matching": {"5w1s": 98.1, "5w5s": 98.9, "20w1s": 93.8, "20w5s": 98.5},
}
PUBLISHED_NON_TRANSDUCTIVE = {"reptile": {"5w1s": 95.39, "5w5s": 98.90, "20w1s": 88.14, "20w5s": 96.65}}
"""Nichol et al. (2018): each query classified with the support set alone (`--eval 5w1s/nt`)."""
NON_TRANSDUCTIVE = "/nt"


def parse_setting(setting: str) -> tuple[int, int, bool]:
    """`5w1s` -> (5, 1, transductive), `20w5s/nt` -> (20, 5, not transductive); exits naming the form otherwise."""
    try:
        ways, shots = (int(n) for n in setting.removesuffix(NON_TRANSDUCTIVE).rstrip("s").split("w"))
    except ValueError:
        sys.exit(f"--eval {setting}: write a setting as WAYSwSHOTSs, e.g. 5w1s or 20w5s (add /nt for no transduction)")
    return ways, shots, not setting.endswith(NON_TRANSDUCTIVE)


def preset_config(config_file: str, preset: str):
    """`configs/CONFIG_FILE.py`'s `get_config(preset)`, loaded from the file as `train.py --config` loads it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(config_file, ROOT / "configs" / f"{config_file}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


def hardware() -> str:
    import jax

    dev = jax.devices()[0]
    return f"{dev.platform}:{getattr(dev, 'device_kind', '')} x{jax.device_count()} ({os.cpu_count()} host cores)"


PUBLISHED_STEPS = {"maml": 60000, "fomaml": 60000, "reptile": 100000, "protonet": 20000, "matching": 20000}
"""Training steps of the published schedules (ProtoNet: the learning rate is 1e-6 after 20,000 halved-every-2000
episodes; Reptile: 100k meta-iterations; MAML: 60k; matching networks: as ProtoNet, stopped on validation)."""


def published_steps(method: str, ways: int) -> int | None:
    """The published schedule of `method` trained on `ways`-way episodes: Nichol et al. train 20-way Reptile for
    200,000 meta-steps, twice their 5-way schedule."""
    steps = PUBLISHED_STEPS.get(method)
    return 2 * steps if method == "reptile" and ways == 20 else steps


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results",
                            ":!docs/curves", ":!README.md"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    # the records this run appends, and the tables made from them, do not make the code dirty
    return out.stdout.strip() + ("+dirty" if dirty else "")


def latest_step(workdir: Path) -> int:
    ckpts = workdir / "checkpoints"
    steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.is_dir() else []
    return max(steps, default=0)


def train_segment(workdir: Path, train_args: list[str], env: dict, *, time_limit: float | None = None) -> int:
    """Runs (or resumes) training and appends the segment to runs/NAME/segments.jsonl; returns train.py's exit code.

    With `time_limit` (seconds), train.py gets SIGTERM when it is spent: it saves a checkpoint at the next step and
    stops, and the same command continues from there later. Stopping this script (SIGTERM, or Ctrl-C, which reaches
    train.py too) stops train.py the same way; the segment is recorded and the script exits without evaluating.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    first, start = latest_step(workdir), time.time()
    proc = subprocess.Popen([sys.executable, "train.py", *train_args, "--workdir", str(workdir)], cwd=ROOT, env=env)
    stopped = []

    def stop(signum, frame):
        stopped.append(signum)
        proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
    except KeyboardInterrupt:  # the terminal's SIGINT reached train.py as well: it is saving its checkpoint
        stopped.append(signal.SIGINT)
    finally:
        proc.wait()
        signal.signal(signal.SIGTERM, previous)
    segment = {"from_step": first, "to_step": latest_step(workdir), "seconds": round(time.time() - start, 1),
               "load_average_15min": os.getloadavg()[2], "commit": commit(), "exit_code": proc.returncode,
               "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with open(workdir / "segments.jsonl", "a") as f:
        f.write(json.dumps(segment) + "\n")
    if stopped:
        sys.exit(f"{workdir.name}: stopped by signal {stopped[0]} at step {segment['to_step']} (segment recorded); "
                 "run the same command to resume")
    return proc.returncode


def train_and_test(workdir: Path, train_args: list[str], steps: int, *, time_limit: float | None = None) -> dict:
    """Trains `workdir` to `steps` (resuming) and returns train.py's own test of it (WORKDIR/eval_test.json: 600
    episodes, best checkpoint) with the training wall time (compile and validation included, final test excluded),
    seconds per step and the time-weighted load average over every segment. Exits asking for the same command again
    when training stopped early (time limit, signal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tested = workdir / "eval_test.json"
    if not (tested.exists() and json.loads(tested.read_text())["step"] == steps):
        code = train_segment(workdir, train_args, env, time_limit=time_limit)
        if code != 0 or latest_step(workdir) < steps or not tested.exists():
            sys.exit(f"{workdir.name}: training stopped before step {steps}; run the same command to resume")
    segments = [json.loads(line) for line in (workdir / "segments.jsonl").read_text().splitlines()]
    record = json.loads(tested.read_text())
    seconds = sum(s["seconds"] for s in segments) - record["seconds"]
    record.update(trained_steps=steps, train_wall_seconds=round(seconds, 1), seconds_per_step=round(seconds / steps, 2),
                  train_load_average=round(sum(s["load_average_15min"] * s["seconds"] for s in segments)
                                           / max(seconds, 1e-9), 2),
                  hardware=hardware(), python=platform.python_version(), commit=commit())
    return record


def comparison_main(doc: str, choices, run, table, *, flag: str = "variants", steps: int = 200, more=None) -> None:
    """The command line of an equal-steps comparison script (bench/mamlpp_ablation.py, imaml_accuracy.py,
    adaptive_sampling.py): `run [--steps N] [--FLAG a,b] [--time-limit S]` plus `more(parser)`'s arguments, which
    calls `run(chosen, args)`, or `table`, which prints `table()`."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--steps", type=int, default=steps)
    r.add_argument(f"--{flag}", default=",".join(choices), help=f"comma-separated, of {list(choices)}")
    r.add_argument("--time-limit", type=float, default=None, help="per run: stop training (checkpoint saved) "
                   "after this many seconds; the same command continues it")
    if more is not None:
        more(r)
    sub.add_parser("table")
    a = p.parse_args()
    if a.cmd == "table":
        print(table())
        return
    chosen = getattr(a, flag.replace("-", "_")).split(",")
    unknown = [c for c in chosen if c not in choices]
    if unknown:
        sys.exit(f"unknown {flag} {unknown}; choose from {list(choices)}")
    run(chosen, a)


def run(name: str, train_args: list[str], evals: list[str], *, time_limit: float | None = None,
        train: bool = True, partial: bool = False, episodes: int = 600, queries: int | None = None) -> None:
    """Trains runs/NAME (unless `train` is False), then evaluates its best checkpoint in every setting of `evals`.

    A run that stopped before its schedule ended (time limit, signal) is evaluated only with `partial=True`, and its
    records say `"partial": true`; otherwise it exits asking for the same command again to resume. A run whose
    train.py failed (any exit code but 0 and a signal's) is never evaluated: its workdir may hold another run's files.
    """
    workdir = RUNS / name
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if train:
        check_settings(train_args, evals)
    code = train_segment(workdir, train_args, env, time_limit=time_limit) if train else _last_exit_code(workdir)
    if code not in (0, *STOPPED_BY_SIGNAL):
        sys.exit(f"{name}: train.py failed (exit code {code}), so nothing was evaluated or recorded; its error is "
                 "printed above. Fix it and run the same command again (a run cut by a time limit or a signal is "
                 "evaluated with --partial; a failed one never is).")
    trained = latest_step(workdir)
    if not trained:
        sys.exit(f"{name}: train.py was stopped (exit code {code}) before its first checkpoint; run the same command "
                 "again to train it")
    config = _saved_config(workdir)
    finished = code == 0 and (workdir / "eval_test.json").exists()  # train.py ended (schedule or early stop)
    if code in STOPPED_BY_SIGNAL and trained >= config["total_steps"]:
        finished = True  # the schedule was trained; the signal cut only train.py's own final test
    if not finished and not partial:
        sys.exit(f"training stopped (exit code {code}) before the run finished; run the same command to resume, or "
                 "add --partial to evaluate the checkpoints it has")
    segments = [json.loads(line) for line in (workdir / "segments.jsonl").read_text().splitlines()]
    train_seconds = sum(s["seconds"] for s in segments)
    load = sum(s["load_average_15min"] * s["seconds"] for s in segments) / max(train_seconds, 1e-9)
    if not evals:
        evals = [f"{config['test_ways']}w{config['test_shots']}s"]
    schedule = published_steps(config["method"], config["ways"])
    for setting in evals:
        ways, shots, transductive = parse_setting(setting)
        extra = [] if transductive else ["--notransductive"]
        extra += [] if queries is None else ["--queries", str(queries)]
        done = subprocess.run([sys.executable, "evaluate.py", "--workdir", str(workdir), "--ways", str(ways), "--shots",
                               str(shots), "--episodes", str(episodes), *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"evaluate.py failed on {name} {setting} (exit code {done.returncode}):\n{done.stderr[-3000:]}")
        record = json.loads(done.stdout.strip().splitlines()[-1])
        record.update(run=name, setting=setting.removesuffix(NON_TRANSDUCTIVE), train_args=train_args, train_wall_seconds=round(train_seconds, 1),
                      segments=len(segments), train_load_average=round(load, 2), trained_steps=trained,
                      schedule_fraction=round(trained / schedule, 3) if schedule else None,
                      partial=not finished, hardware=hardware(), load_average=os.getloadavg()[0],
                      python=platform.python_version(), commit=commit())
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record))


def train_config(train_args: list[str]):
    """The config train.py builds from `train_args` (`--config FILE:PRESET` and its `--config.KEY=VALUE`s)."""
    from absl import flags
    from ml_collections import config_flags

    argv = ["reproduce.py", *train_args]
    if "--config" in argv:  # a config path relative to the repository, wherever this runs from
        i = argv.index("--config") + 1
        path, colon, preset = argv[i].partition(":")
        argv[i] = str(ROOT / path) + colon + preset
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)  # the overrides in argv
    values(argv, known_only=True)
    return values.config.copy_and_resolve_references()


def check_settings(train_args: list[str], evals: list[str]) -> None:
    """Exits with evaluate.py's own error when a setting of `evals` cannot score the run `train_args` trains (a 5-way
    head asked for 20 ways), before hours of training rather than after them."""
    from fewjax.experiment.config import validate

    for setting in evals:
        config = train_config(train_args)
        config.test_ways, config.test_shots, _ = parse_setting(setting)
        try:
            validate(config)
        except ValueError as e:
            sys.exit(f"--eval {setting} cannot score this run: {e}. Train the {setting.removesuffix(NON_TRANSDUCTIVE)} preset for that setting, or "
                     "drop it from --eval.")


STOPPED_BY_SIGNAL = (128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM, -signal.SIGINT)
"""train.py's exit codes when a time limit or a signal stopped it: after saving a checkpoint (fewjax.cli.train), or
killed by the signal itself (its final test, after the training loop, keeps the default handler)."""


def _last_exit_code(workdir: Path) -> int:
    """train.py's exit code in the run's last segment (0 when it ended its schedule or stopped early; 143 when a
    time limit or signal stopped it), or 1 when no segment was recorded. evaluate.py writes eval_test.json too, so
    that file alone does not say the training finished."""
    path = workdir / "segments.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1])["exit_code"] if lines else 1


def _saved_config(workdir: Path) -> dict:
    from fewjax.experiment.checkpoint import Checkpoints

    with Checkpoints(workdir / "checkpoints", read_only=True) as ckpts:
        return ckpts.read_config()


LAKE_PUBLISHED_ERRORS = {"people": 4.5, "Bayesian program learning": 3.3, "Siamese convnet (Koch et al.)": 8.0,
                         "convnet": 13.5}
"""Lake et al. (2015), 20-way 1-shot within-alphabet classification error (%)."""


def _records() -> list[dict]:
    return read_records(RESULTS)


def read_records(path: Path) -> list[dict]:
    """The JSON lines of a result file (none when it does not exist yet)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def append_record(path: Path, record: dict) -> None:
    """Appends `record` to the result file `path` as one JSON line, and prints it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def _trained(r: dict) -> tuple[int, str]:
    steps = r.get("trained_steps", r["step"])
    published = PUBLISHED_STEPS.get(r["method"])
    fraction = r.get("schedule_fraction") or (steps / published if published else None)  # 20-way Reptile: its own
    return steps, f"{steps:,} ({100 * fraction:.1f}%)" if fraction else f"{steps:,}"


def _wall(r: dict) -> str:
    unrecorded = r.get("segments_unrecorded")
    platform, _, device = r.get("hardware", "").partition(":")
    return (f"{r['train_wall_seconds'] / 60:.1f} min" + (f" + {unrecorded} unrecorded segment" if unrecorded else "")
            + (f" on one {device.split(' x')[0]}" if platform == "gpu" else ""))


def _training(r: dict) -> str:
    """How a Lake run trained: its episodes' ways (the preset's unless overridden), and what it changed from its
    preset: rotated classes, augmentation, episodes within one alphabet, image size."""
    args, value = r.get("train_args", []), _overrides(r)
    parts = [f"{train_config(args).ways}-way"] if "--config" in args else []
    parts += ["rotations as classes"] * (value.get("split") == "lake_rotations")
    parts += ["affine"] * (value.get("augment.affine") == "True")
    if float(value.get("train_within_alphabet", 0)):
        parts.append(f"{float(value['train_within_alphabet']):.0%} of episodes within one alphabet")
    if "image_size" in value:
        parts.append(f"{value['image_size']} px")
    return ", ".join(parts) or "preset"


def _overrides(r: dict) -> dict[str, str]:
    """The `--config.KEY=VALUE` overrides of a record's training command, as {KEY: VALUE}."""
    return {a.partition("=")[0].removeprefix("--config."): a.partition("=")[2]
            for a in r.get("train_args", []) if a.startswith("--config.") and "=" in a}


VARIANT_KEYS = ("matching_distance", "distance")
"""Config keys whose override makes a run another variant of its method, with rows of its own beside the preset's
(matching networks with squared Euclidean attention), rather than a longer or shorter run of the same thing."""


def _variant(r: dict) -> str:
    """"sqeuclidean" for a run that overrode a `VARIANT_KEYS` key; "" for the method as its preset has it."""
    value = _overrides(r)
    return ", ".join(value[k] for k in VARIANT_KEYS if k in value)


BOOKKEEPING = ("eval_every", "checkpoint_every", "log_every", "val_episodes", "test_episodes",
               "test_ways", "eval_batch_size")
"""Config keys that say how a run is watched, not what it trains: left out of the table. `total_steps` stays in: a
schedule that follows it (Reptile's linear annealing) is compressed, not cut, when a run shortens it."""


def _preset_and_changes(r: dict) -> str:
    """The config a run trained (`omniglot_matching.py:5w1s`) and what its command line changed in it."""
    args = r.get("train_args", [])
    preset = args[args.index("--config") + 1].rpartition("/")[2] if "--config" in args else "?"
    changes = [a.removeprefix("--config.") for a in args if a.startswith("--config.")
               and a.removeprefix("--config.").partition("=")[0] not in BOOKKEEPING]
    return f"`{preset}`" + (f" with {', '.join(changes)}" if changes else "")


def longest_runs(records: list[dict]) -> list[dict]:
    """For each (method, variant, setting, protocol), the record of the most-trained run (the latest record on a
    tie), in the published table's order; shorter and earlier records stay in the file and on the curves."""
    best: dict = {}
    for r in records:
        key = (r["method"], _variant(r), r["setting"], r.get("transductive", True))
        if key not in best or _trained(r)[0] >= _trained(best[key])[0]:
            best[key] = r
    methods, settings = list(PUBLISHED), ["5w1s", "5w5s", "20w1s", "20w5s"]
    rank = lambda k: (methods.index(k[0]) if k[0] in methods else len(methods), k[0], k[1],  # noqa: E731
                      settings.index(k[2]) if k[2] in settings else len(settings), k[2], not k[3])
    return [best[k] for k in sorted(best, key=rank)]


def table() -> str:
    """Published vs fewjax on the Vinyals split: the most-trained run of each method, setting and protocol."""
    records = [r for r in _records() if not r.get("within_alphabet")]
    lines = ["| method | setting | published | fewjax (600 episodes of 15 queries per class unless noted, 95% CI) | "
             "difference | training steps (% of published) | train wall time | load avg | trained | curve | commit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    shown = longest_runs(records)
    for r in shown:
        transductive = r.get("transductive", True)
        pub = (PUBLISHED if transductive else PUBLISHED_NON_TRANSDUCTIVE).get(r["method"], {}).get(r["setting"])
        setting = r["setting"] + ("" if transductive else " (non-transductive)")
        load = r.get("train_load_average", r.get("load_average"))
        diff = f"{100 * r['accuracy'] - pub:+.2f}" if pub else ""
        curve = CURVES / f"{r.get('run')}.png"
        link = f"[{curve.name}]({curve.relative_to(ROOT)})" if curve.exists() else ""
        method = r["method"] + (f" ({_variant(r)})" if _variant(r) else "")
        lines.append(f"| {method} | {setting} | {pub or ''} | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}"
                     f"{_episodes(r)} | "
                     f"{diff} | {_trained(r)[1]}{' (partial)' if r.get('partial') else ''} | {_wall(r)} | "
                     f"{load:.1f} | {_preset_and_changes(r)} | {link} | {r.get('commit', '')} |")
    lines.append(f"\n{len(records) - len(shown)} shorter or earlier evaluations of these runs are in "
                 "`bench/results/reproduction.jsonl` (and on the curves).")
    return "\n".join(lines)


def _episodes(r: dict) -> str:
    """" (3,000 episodes, 1 query per class)" for a test other than the table's 600 episodes of 15 queries."""
    episodes, queries = r.get("episodes", 600), r.get("queries", 15)
    if (episodes, queries) == (600, 15):
        return ""
    return f" ({episodes:,} episodes, {queries} quer{'y' if queries == 1 else 'ies'} per class)"


def lake_table() -> str:
    """Lake's within-alphabet 20-way 1-shot test: error with CI, beside the published errors."""
    lines = ["| method | training | error % (600 episodes, 95% CI) | training steps | train wall time | load avg | "
             "commit |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {name} (published) | | {error} | | | | |" for name, error in LAKE_PUBLISHED_ERRORS.items()]
    for r in _records():
        if not r.get("within_alphabet"):
            continue
        lines.append(f"| fewjax {r['method']} | {_training(r)} | {100 * (1 - r['accuracy']):.2f} ± "
                     f"{100 * r['ci95']:.2f} | {_trained(r)[0]:,}{' (partial)' if r.get('partial') else ''} | "
                     f"{_wall(r)} | {r.get('train_load_average', 0):.1f} | "
                     f"{r.get('commit', '')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("name")
    r.add_argument("--eval", action="append", default=[], help="test settings, e.g. 5w1s (repeatable); 5w1s/nt "
                   "evaluates without transduction (evaluate.py --notransductive)")
    r.add_argument("--time-limit", type=float, default=None, help="stop training (SIGTERM, checkpoint saved) after "
                   "this many seconds; the same command continues it")
    r.add_argument("--partial", action="store_true", help="evaluate and record a run stopped before its schedule "
                   "ended (records say partial: true)")
    r.add_argument("--no-train", action="store_true", help="only evaluate the checkpoints runs/NAME has")
    r.add_argument("--episodes", type=int, default=600, help="test episodes per setting")
    r.add_argument("--queries", type=int, default=None, help="test queries per class (default: the config's "
                   "test_queries)")
    sub.add_parser("table")
    argv = sys.argv[1:]
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if a.cmd == "run":
        run(a.name, train_args, a.eval, time_limit=a.time_limit, train=not a.no_train, partial=a.partial,
            episodes=a.episodes, queries=a.queries)
    else:
        print(table())
        print()
        print(lake_table())


if __name__ == "__main__":
    main()
