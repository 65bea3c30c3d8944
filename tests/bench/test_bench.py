"""Benchmark scripts: argument errors, the ratio table, and one tiny end-to-end step (slow)."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import side_by_side, throughput  # noqa: E402


def test_throughput_rejects_unknown_workload():
    with pytest.raises(SystemExit):
        throughput.parse_args(["--workload", "W9"])


def test_throughput_rejects_zero_steps():
    with pytest.raises(SystemExit):
        throughput.parse_args(["--workload", "W1", "--steps", "0"])


def test_throughput_all_expands():
    _, names = throughput.parse_args(["--workload", "all"])
    assert names == ("W1", "W2", "W3", "W4", "W5", "W6")


def test_ratios_pick_fastest_peer_and_skip_errors():
    recs = [
        dict(impl="fewjax (trainer step)", workload="W1", tasks_per_s=30.0, xla_peak_mb=100.0, gflop_per_task=6.0),
        dict(impl="torchfunc", workload="W1", tasks_per_s=5.0, step_rss_delta_mb=50.0),
        dict(impl="torch_loop", workload="W1", tasks_per_s=10.0, step_rss_delta_mb=70.0),
        dict(impl="l2l", workload="W1", error="exit 1"),
        dict(impl="fewjax (trainer step)", workload="W2", error="timed out"),
        dict(impl="torch_loop", workload="W2", tasks_per_s=1.0),
    ]
    rows = side_by_side.ratios(recs)
    assert [r["workload"] for r in rows] == ["W1"]
    assert rows[0]["fastest_peer"] == "torch_loop"
    assert rows[0]["speedup"] == 3.0
    assert rows[0]["peer_step_rss_delta_mb"] == 70.0
    md = side_by_side.markdown(recs, rows, {})
    assert "**3.0x**" in md and "timed out" in md
    (row,) = side_by_side.ratios(recs, peak_gflops=200.0)
    assert row["fewjax_percent_of_peak"] == 90.0 and row["peer_percent_of_peak"] == 30.0  # 30 and 10 tasks/s
    assert "| 6.0 | 90.0 | 30.0 |" in side_by_side.markdown(recs, [row], {"gemm_peak_gflops": 200.0})


def test_a_gpu_step_whose_library_calls_hide_its_flops_takes_the_cpu_count(tmp_path):
    gpu = [dict(impl="fewjax (trainer step)", workload="W1", tasks_per_s=100.0, gflop_per_task=0.24,
                library_ops={"custom-call(": 42}),
           dict(impl="torchfunc", workload="W1", tasks_per_s=50.0)]
    (row,) = side_by_side.ratios(gpu, peak_gflops=1000.0)
    assert row["gflop_per_task"] is None and row["fewjax_percent_of_peak"] is None  # never the undercount
    cpu = tmp_path / "side_by_side.json"
    cpu.write_text(json.dumps({"meta": {"machine": "2-core CPU"}, "records": [
        dict(impl="fewjax (trainer step)", workload="W1", gflop_per_task=5.0, library_ops={"ynn_fusion": 3})]}))
    (row,) = side_by_side.ratios(gpu, peak_gflops=1000.0, fallback_gflop=side_by_side.cpu_counted_gflop(cpu))
    assert row["gflop_per_task"] == 5.0 and row["gflop_counted_on_cpu"] and row["fewjax_percent_of_peak"] == 50.0
    assert "5.0 (CPU count)" in side_by_side.markdown(gpu, [row], {})
    cpu.write_text(json.dumps({"meta": {"machine": "gpu: NVIDIA H200 x 1"}, "records": []}))
    assert side_by_side.cpu_counted_gflop(cpu) == {}


def test_side_by_side_writes_only_under_its_out_folder(tmp_path, monkeypatch):
    """--out keeps every file of the run there: the peak's record too, and throughput.py runs with --no-save."""
    commands = []

    def fake_run(cmd, **kw):
        commands.append(cmd)
        if "peak.py" in cmd[1]:
            return subprocess.CompletedProcess(cmd, 0, stdout='{"gflops_best": 100.0}\n', stderr="")
        rec = dict(workload="W4", impl="x", tasks_per_s=2.0, gflop_per_task=1.0)
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(rec) + "\n", stderr="")

    monkeypatch.setattr(side_by_side.subprocess, "run", fake_run)
    doc = side_by_side.main(["--workloads", "W4", "--torch-python", sys.executable, "--out", str(tmp_path)])
    assert doc["meta"]["gemm_peak_gflops"] == 100.0
    assert {p.name for p in tmp_path.iterdir()} == {"side_by_side.json", "side_by_side.md"}
    (peak_cmd,) = [c for c in commands if "peak.py" in c[1]]
    assert Path(peak_cmd[peak_cmd.index("--out") + 1]) == tmp_path / "peak_side_by_side.json"
    (fewjax_cmd,) = [c for c in commands if "throughput.py" in c[1]]
    assert "--no-save" in fewjax_cmd


def test_peer_json_lines_ignore_noise():
    out = side_by_side._json_lines('warning\n{"a": 1}\n{broken\n {"b": 2}\n')
    assert out == [{"a": 1}, {"b": 2}]


@pytest.mark.slow
def test_tiny_w1_step_runs_and_reports(tmp_path):
    out = tmp_path / "r.jsonl"
    recs = throughput.main(["--workload", "W1", "--tasks", "1", "--steps", "1", "--warmup", "0", "--out", str(out)])
    (rec,) = recs
    assert rec["workload"] == "W1" and rec["tasks"] == 1
    assert rec["tasks_per_s"] > 0 and rec["compile_s"] > 0 and rec["xla_peak_mb"] > 0
    assert json.loads(out.read_text().splitlines()[0])["workload"] == "W1"
    # one task's FLOPs are the same counted from the scan over tasks (one body) and from the vmapped program
    vmapped = throughput.bench_step("W1", steps=1, warmup=0, tasks=2, overrides={"task_loop": "vmap"})
    scanned = throughput.bench_step("W1", steps=1, warmup=0, tasks=2, overrides={"task_loop": "scan"})
    assert scanned["gflop_per_task"] == pytest.approx(vmapped["gflop_per_task"], rel=0.02)
    assert 3.0 < scanned["gflop_per_task"] < 8.0  # ~5 GFLOP: 80 images through Conv4, second order
    # the inner steps' scan counts by its trip count too: W2 is W1 with 5 inner steps instead of 1
    five_steps = throughput.bench_step("W2", steps=1, warmup=0, tasks=2)
    assert five_steps["gflop_per_task"] > 1.4 * scanned["gflop_per_task"]


def test_set_overrides_take_the_type_of_the_key():
    from bench.common import WORKLOADS, trainer_config

    c = trainer_config(WORKLOADS["W1"], overrides={"remat": "False", "task_loop": "vmap", "optim.lr": "3e-4"})
    assert c.remat is False and c.task_loop == "vmap" and c.optim.lr == 3e-4
    assert trainer_config(WORKLOADS["W1"], overrides={"remat": "true"}).remat is True
    with pytest.raises(ValueError, match="remat is a bool; write true or false"):
        trainer_config(WORKLOADS["W1"], overrides={"remat": "no"})


def test_curves_record_keeps_validation_rows_and_plot_writes_a_png(tmp_path):
    from bench import curves

    run = tmp_path / "runs" / "pn"
    run.mkdir(parents=True)
    rows = [{"step": s, "train/loss": 1.0 / s} for s in range(10, 101, 10)] + [{"step": 55, "val/val_accuracy": 0.9}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (run / "segments.jsonl").write_text(json.dumps({"from_step": 0, "to_step": 100, "seconds": 7200.0}) + "\n")
    path = curves.record("pn", runs=tmp_path / "runs", every=20, out=tmp_path / "curves")
    header, *kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert header["segments"][0]["to_step"] == 100
    assert [r["step"] for r in kept] == [20, 40, 55, 60, 80, 100]
    png = curves.plot("pn", curves=tmp_path / "curves", out=tmp_path / "plots")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="missing or empty"):
        curves.record("absent", runs=tmp_path / "runs", out=tmp_path / "curves")
    (tmp_path / "curves" / "pn2.jsonl").write_text(path.read_text())
    both = curves.compare("ablation", {"pn": "as run", "pn2": "again"}, curves=tmp_path / "curves",
                          out=tmp_path / "plots")
    assert both.name == "ablation.png" and both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="bench/curves.py record absent"):
        curves.compare("x", {"absent": "a"}, curves=tmp_path / "curves", out=tmp_path / "plots")


def test_device_summary_reports_ratios_fraction_of_peak_and_failed_steps(tmp_path):
    from bench import device_summary

    (tmp_path / "environment.json").write_text(json.dumps({"machine": "cpu: cpu x 1", "commit": "abc", "quick": 1}))
    (tmp_path / "peak.json").write_text(json.dumps([{"dtype": "float32", "gflops_best": 100.0}]))
    records = [{"impl": "fewjax (trainer step)", "workload": "W1", "tasks_per_s": 10.0, "gflop_per_task": 5.0},
               {"impl": "torch_loop", "workload": "W1", "tasks_per_s": 8.0},
               {"impl": "fewjax (trainer step)", "workload": "W4", "error": "timed out after 120 s"}]
    (tmp_path / "side_by_side.json").write_text(json.dumps({"records": records}))
    (tmp_path / "steps.jsonl").write_text(json.dumps({"step": "W5_evaluation", "exit_code": 124}) + "\n")
    out = device_summary.main([str(tmp_path)])
    assert "| W1 | 10.0 | torch_loop | 8.0 | 1.25x | 5.0 | 50.0% |" in out
    assert "| W4 | timed out after 120 s |" in out and "W5_evaluation" in out


@pytest.mark.slow  # a few minutes on a quiet 2-core CPU
def test_device_check_runs_on_the_cpu(tmp_path):
    import os
    import subprocess

    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PEERS="/nonexistent")
    subprocess.run(["bash", str(ROOT / "bench" / "device_check.sh"), "--quick", "--budget", "900"], env=env,
                   check=True, cwd=ROOT)
    rows = {line.split(" | ")[0]: line for line in (tmp_path / "summary.md").read_text().splitlines()}
    assert all("not run" not in rows[f"| {w}"] and "n/a" not in rows[f"| {w}"] for w in ("W1", "W4"))  # --quick's


@pytest.mark.parametrize("preset", ["maml_5x", "nosuch_5w1s", "maml20w1s"])
def test_device_first_refuses_an_unknown_preset_before_anything_runs(tmp_path, preset):
    import os

    env = dict(os.environ, OUT=str(tmp_path / "out"), PRESET=preset, PYTHON="/nonexistent/python")
    p = subprocess.run(["bash", str(ROOT / "bench" / "device_first.sh")], env=env, cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 2 and f"PRESET={preset}: no preset" in p.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [([], "usage: bash bench/text_device.sh pack|receive|run"),
                                           (["receive"], "no .xfer/a/weights.part: carry .xfer/a"),
                                           (["run"], "missing a half: 'receive' with .xfer/a first")])
def test_text_device_stops_with_what_to_do(tmp_path, args, message):
    """Outside a prepared checkout (a copy of the script alone), each mode says what is missing and runs nothing."""
    import shutil

    (tmp_path / "bench").mkdir()
    shutil.copy(ROOT / "bench" / "text_device.sh", tmp_path / "bench")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    p = subprocess.run(["bash", str(tmp_path / "bench" / "text_device.sh"), *args], env=env, capture_output=True,
                       text=True)
    assert p.returncode == 2 and message in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bench"]


def test_device_first_runs_the_preset_and_finn_protocol(tmp_path):
    import os

    env = dict(os.environ, OUT=str(tmp_path / "out"), PRESET="maml_20w5s", TRAIN_SECONDS="7", CHECK_BUDGET="0",
               PYTHON="echo")  # each python step prints its command line instead of running
    p = subprocess.run(["bash", str(ROOT / "bench" / "device_first.sh")], env=env, cwd=ROOT, capture_output=True,
                       text=True)
    assert ("bench/reproduce.py run maml_20w5s_gpu --time-limit 7 --partial -- --config configs/omniglot_maml.py:20w5s"
            in p.stdout)
    assert "run maml_20w5s_gpu --no-train --partial --eval 20w5s --queries 5 --episodes 3000" in p.stdout
    assert (tmp_path / "out" / "reproduction_new.jsonl").read_text() == ""  # nothing ran, so no record is new


def test_text_device_carries_the_weights_in_two_halves(tmp_path):
    import hashlib
    import os
    import shutil

    src = tmp_path / "src"
    model = src / "models" / "all-MiniLM-L6-v2"
    model.mkdir(parents=True)
    (src / "data" / "text").mkdir(parents=True)
    weights = np.random.default_rng(0).bytes(1001)
    (model / "model.safetensors").write_bytes(weights)
    (model / "SHA256SUMS").write_text(f"{hashlib.sha256(weights).hexdigest()}  model.safetensors\n")
    root = tmp_path / "root"
    (root / "bench").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "text_device.sh", root / "bench")
    env = dict(os.environ, SHARED_SRC=str(src), TEXT_SECONDS="0", PYTHON="false", OUT=str(tmp_path / "out"),
               TMPDIR=str(tmp_path))
    script = ["bash", str(root / "bench" / "text_device.sh")]
    subprocess.run(script + ["pack"], env=env, cwd=root, check=True, capture_output=True)
    halves = [(root / ".xfer" / h / "weights.part").read_bytes() for h in "ab"]
    assert halves[0] + halves[1] == weights and len(halves[0]) == 501
    assert not (root / "shared" / "models" / "all-MiniLM-L6-v2" / "model.safetensors").exists()
    subprocess.run(script + ["receive"], env=env, cwd=root, check=True, capture_output=True)
    shutil.rmtree(root / ".xfer" / "a")  # as on the device: the first half comes from the receiving call's copy
    p = subprocess.run(script + ["run"], env=env, cwd=root, capture_output=True, text=True)
    assert p.returncode == 0 and "model.safetensors: OK" in p.stdout
    assert not (root / "shared" / "models" / "all-MiniLM-L6-v2" / "model.safetensors").exists()  # removed on exit
    (root / ".xfer" / "b" / "weights.part").write_bytes(halves[1][:-1] + b"x")
    p = subprocess.run(script + ["run"], env=env, cwd=root, capture_output=True, text=True)
    assert p.returncode == 1 and "FAILED" in p.stdout


@pytest.mark.slow  # two trainings and three evaluations in subprocesses
def test_reproduce_records_finished_and_partial_runs(tmp_path, monkeypatch):
    from bench import reproduce

    monkeypatch.setattr(reproduce, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "reproduction.jsonl")
    args = ["--config", "configs/sinusoid_maml.py:5shot", "--config.total_steps=4", "--config.eval_every=2",
            "--config.checkpoint_every=2", "--config.val_episodes=4", "--config.test_episodes=4",
            "--config.eval_batch_size=2", "--config.meta_batch_size=2"]
    reproduce.run("sin", args, [])
    (tmp_path / "runs" / "sin" / "eval_test.json").unlink()  # as if cut short before the end
    with pytest.raises(SystemExit, match="--partial"):
        reproduce.run("sin", args, [], train=False)
    reproduce.run("sin", args, [], train=False, partial=True, episodes=6, queries=3)
    with open(tmp_path / "runs" / "sin" / "segments.jsonl", "a") as f:  # a time limit killed train.py's final test
        f.write(json.dumps({"from_step": 4, "to_step": 4, "seconds": 1.0, "load_average_15min": 1.0,
                            "exit_code": -signal.SIGTERM}) + "\n")
    reproduce.run("sin", args, [], train=False, episodes=6)  # the schedule was trained: not partial
    first, second, third = [json.loads(line) for line in (tmp_path / "reproduction.jsonl").read_text().splitlines()]
    assert first["trained_steps"] == second["trained_steps"] == 4 and first["setting"] == "1w5s"
    assert first["partial"] is False and second["partial"] is True and first["segments"] == 1
    assert (first["episodes"], second["episodes"], second["queries"]) == (600, 6, 3)
    assert third["partial"] is False and third["segments"] == 2


def test_mamlpp_ablation_scales_the_schedule_and_tables_against_maml(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from bench import mamlpp_ablation as ab

    args = ab.train_args("+lslr", 400)
    assert "--config.total_steps=400" in args and "--config.mamlpp.epoch_steps=4" in args
    assert "--config.mamlpp.lslr=True" in args and "--config.mamlpp.per_step_bn=False" in args
    assert not any(a.startswith("--config.mamlpp") for a in ab.train_args("mamlpp", 400) if "epoch_steps" not in a)
    path = tmp_path / "ablation.jsonl"
    row = dict(trained_steps=200, ci95=0.007, seconds_per_step=10.0, train_load_average=7.0, commit="abc")
    path.write_text("".join(json.dumps({**row, "variant": v, "accuracy": a}) + "\n"
                            for v, a in (("maml", 0.80), ("+lslr", 0.81), ("maml", 0.82))))
    lines = ab.table(path).splitlines()
    assert lines[2].startswith("| maml | 82.00 ± 0.70 |")  # a variant measured again: its latest row
    assert lines[3].startswith("| +lslr | 81.00 ± 0.70 | -1.00 |")


def test_imaml_accuracy_trains_both_presets_alike_and_tables_them(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from bench import imaml_accuracy as ia

    maml, imaml = ia.train_args("maml", 300, 8), ia.train_args("imaml", 300, 8)
    assert maml[1] == "configs/omniglot_maml.py:5w1s" and imaml[1] == "configs/omniglot_imaml.py:5w1s"
    assert maml[2:] == imaml[2:] and "--config.meta_batch_size=8" in maml and "--config.total_steps=300" in maml
    path = tmp_path / "imaml_accuracy.jsonl"
    row = dict(trained_steps=300, meta_batch_size=8, ci95=0.006, seconds_per_step=4.0, train_load_average=5.0,
               commit="abc")
    path.write_text("".join(json.dumps({**row, "variant": v, "preset": ia.PRESETS[v], "accuracy": a}) + "\n"
                            for v, a in (("maml", 0.90), ("imaml", 0.925))))
    lines = ia.table(path).splitlines()
    assert lines[2].startswith("| maml (`configs/omniglot_maml.py:5w1s`) | 90.00 ± 0.60 | 300 x 8 |")
    assert lines[3].startswith("| imaml (`configs/omniglot_imaml.py:5w1s`) | 92.50 ± 0.60 |")


def test_a_run_stopped_by_a_signal_counts_as_partial_even_after_evaluate_wrote_eval_test_json(tmp_path):
    from bench import reproduce

    assert reproduce._last_exit_code(tmp_path) == 1  # never trained
    segments = [{"from_step": 0, "to_step": 500, "exit_code": 0}, {"from_step": 500, "to_step": 900, "exit_code": 143}]
    (tmp_path / "segments.jsonl").write_text("".join(json.dumps(s) + "\n" for s in segments))
    assert reproduce._last_exit_code(tmp_path) == 143


def test_reproduce_asks_to_train_again_when_a_signal_stopped_train_py_before_its_first_checkpoint(tmp_path, monkeypatch):
    from bench import reproduce

    monkeypatch.setattr(reproduce, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "reproduction.jsonl")
    workdir = tmp_path / "runs" / "early"
    workdir.mkdir(parents=True)
    (workdir / "segments.jsonl").write_text(json.dumps({"from_step": 0, "to_step": 0, "exit_code": -signal.SIGTERM}))
    with pytest.raises(SystemExit, match="before its first checkpoint; run the same command"):
        reproduce.run("early", [], ["5w1s"], train=False, partial=True)
    assert reproduce.published_steps("reptile", 20) == 200000 and reproduce.published_steps("reptile", 5) == 100000


@pytest.mark.parametrize("exit_code", [1, 2])
def test_reproduce_never_evaluates_a_run_whose_training_failed_even_with_partial(tmp_path, monkeypatch, exit_code):
    from bench import reproduce

    monkeypatch.setattr(reproduce, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "reproduction.jsonl")
    workdir = tmp_path / "runs" / "failed"
    workdir.mkdir(parents=True)
    (workdir / "segments.jsonl").write_text(json.dumps({"from_step": 0, "to_step": 168, "exit_code": exit_code}) + "\n")
    (workdir / "eval_test.json").write_text("{}")  # left by an earlier run in this workdir
    with pytest.raises(SystemExit, match=f"train.py failed \\(exit code {exit_code}\\)"):
        reproduce.run("failed", [], ["5w1s"], train=False, partial=True)
    assert not (tmp_path / "reproduction.jsonl").exists()


def test_reproduce_refuses_a_setting_the_trained_head_cannot_score_before_training():
    from bench import reproduce

    reptile = ["--config", "configs/omniglot_reptile.py:5w1s", "--config.total_steps=10"]
    reproduce.check_settings(reptile, ["5w1s", "5w1s/nt"])
    reproduce.check_settings([*reptile, "--config.ways=20"], ["20w1s/nt"])  # the override is what is checked
    with pytest.raises(SystemExit, match="--eval 20w1s/nt cannot score this run: .*5-way head.*Train the 20w1s preset"):
        reproduce.check_settings(reptile, ["5w1s", "20w1s/nt"])
    with pytest.raises(SystemExit, match="write a setting as WAYSwSHOTSs"):
        reproduce.check_settings(reptile, ["5-way"])


def test_reproduction_table_puts_each_reptile_row_beside_its_own_protocol(tmp_path, monkeypatch):
    from bench import reproduce

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "reproduction.jsonl")
    row = dict(method="reptile", setting="5w1s", accuracy=0.95, ci95=0.004, step=900, trained_steps=900,
               train_wall_seconds=600.0, train_load_average=2.0, hardware="cpu", commit="abc")
    rows = [row, {**row, "transductive": False}, {**row, "accuracy": 0.96, "episodes": 3000, "queries": 1}]
    (tmp_path / "reproduction.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    transductive, alone = reproduce.table().splitlines()[2:4]
    # the latest evaluation of the same checkpoint wins, and says how it differs from 600 episodes of 15 queries
    assert transductive.startswith("| reptile | 5w1s | 97.68 | 96.00 ± 0.40 (3,000 episodes, 1 query per class) |")
    assert alone.startswith("| reptile | 5w1s (non-transductive) | 95.39 | 95.00 ± 0.40 |")


def test_a_run_trained_on_a_gpu_says_so_in_the_table_and_on_its_curve(tmp_path, monkeypatch):
    from bench import curves, reproduce

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "reproduction.jsonl")
    monkeypatch.setattr(curves, "RESULTS", tmp_path / "reproduction.jsonl")
    row = dict(method="maml", setting="5w1s", accuracy=0.97, ci95=0.003, step=900, trained_steps=900, run="g",
               train_wall_seconds=270.0, train_load_average=0.8, hardware="gpu:NVIDIA H200 x1 (16 host cores)")
    cpu = {**row, "run": "c", "setting": "5w5s", "hardware": "cpu:cpu x1 (2 host cores)"}
    (tmp_path / "reproduction.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(cpu) + "\n")
    assert "| 4.5 min on one NVIDIA H200 |" in reproduce.table()
    assert "| 4.5 min |" in reproduce.table()  # the CPU row
    assert [curves._hardware(r) for r in ("g", "c", "absent")] == ["NVIDIA H200", "a 2-core CPU", "this machine"]


def test_reproduction_table_shows_the_most_trained_run_of_each_setting_and_what_it_changed(tmp_path, monkeypatch):
    from bench import reproduce

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "reproduction.jsonl")
    row = dict(method="matching", setting="5w1s", ci95=0.002, step=900, train_wall_seconds=600.0,
               train_load_average=2.0, hardware="cpu", commit="abc", run="m",
               train_args=["--config", "configs/omniglot_matching.py:5w1s", "--config.ways=60",
                           "--config.eval_every=500", "--config.total_steps=8000"])
    rows = [{**row, "trained_steps": 900, "accuracy": 0.95}, {**row, "trained_steps": 4000, "accuracy": 0.978},
            {**row, "trained_steps": 2000, "accuracy": 0.97}]
    (tmp_path / "reproduction.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = reproduce.table().splitlines()
    assert len(lines) == 5 and lines[2].startswith("| matching | 5w1s | 98.1 | 97.80 ± 0.20 | -0.30 | 4,000 (20.0%) |")
    # a shortened schedule is part of what the run trained; how often it was watched is not
    assert "`omniglot_matching.py:5w1s` with ways=60, total_steps=8000 |" in lines[2] and "eval_every" not in lines[2]
    assert lines[4].startswith("2 shorter or earlier evaluations")


def test_a_run_of_another_attention_distance_gets_rows_of_its_own(tmp_path, monkeypatch):
    from bench import reproduce

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "reproduction.jsonl")
    row = dict(method="matching", setting="5w5s", ci95=0.002, step=900, train_wall_seconds=600.0,
               train_load_average=2.0, hardware="cpu", commit="abc", run="m", accuracy=0.985, trained_steps=5000,
               train_args=["--config", "configs/omniglot_matching.py:5w5s", "--config.ways=60"])
    l2 = {**row, "accuracy": 0.995, "trained_steps": 2000,
          "train_args": row["train_args"] + ["--config.matching_distance=sqeuclidean", "--config.temperature=1.0"]}
    (tmp_path / "reproduction.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(l2) + "\n")
    lines = reproduce.table().splitlines()
    # fewer steps, yet not a shorter run of the preset: both show, the preset's first
    assert lines[2].startswith("| matching | 5w5s | 98.9 | 98.50 ± 0.20 | -0.40 | 5,000 (25.0%) |")
    assert lines[3].startswith("| matching (sqeuclidean) | 5w5s | 98.9 | 99.50 ± 0.20 | +0.60 | 2,000 (10.0%) |")
    assert "matching_distance=sqeuclidean, temperature=1.0 |" in lines[3]
    assert lines[5].startswith("0 shorter or earlier evaluations")


def test_lake_table_says_what_each_run_changed_in_its_training(tmp_path, monkeypatch):
    from bench import reproduce

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "reproduction.jsonl")
    row = dict(method="protonet", setting="20w1s", accuracy=0.76, ci95=0.012, step=2000, trained_steps=2000,
               train_wall_seconds=600.0, train_load_average=2.0, within_alphabet=True, commit="abc",
               train_args=["--config", "configs/omniglot_protonet.py:lake", "--config.ways=20",
                           "--config.augment.affine=True", "--config.train_within_alphabet=0.5",
                           "--config.image_size=56"])
    preset = {**row, "train_args": ["--config", "configs/omniglot_protonet.py:lake", "--config.augment.affine=True"]}
    (tmp_path / "reproduction.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(preset) + "\n")
    rows = reproduce.lake_table().splitlines()
    assert rows[-2].startswith(
        "| fewjax protonet | 20-way, affine, 50% of episodes within one alphabet, 56 px | 24.00 ± 1.20 | 2,000 |")
    assert rows[-1].startswith("| fewjax protonet | 60-way, affine | 24.00 ± 1.20 |")  # the preset's ways, named


def _flag_record(step, losses, ops):
    return dict(median_step_s=step, losses=losses, library_ops=ops, gflop_per_task=5.0, tasks=2)


def test_xla_flags_rows_compare_each_variant_with_the_default_of_the_same_rounds():
    from bench import xla_flags

    ynn = {"ynn_fusion": 3}
    runs = {("W4", "default"): [_flag_record(1.0, [2.0, 1.5], ynn), _flag_record(1.2, [2.0, 1.5], ynn)],
            ("W4", "onednn"): [_flag_record(0.5, [2.0, 1.5], ynn), _flag_record(0.6, [2.0, 1.5], ynn)],
            ("W4", "ynn off (Eigen)"): [_flag_record(2.2, [2.1, 1.6], {"convolution(": 3}), dict(error="exit 1")]}
    rows = {r["variant"]: r for r in xla_flags.summarize(runs, peak=100.0)}
    assert rows["onednn"]["speedup_vs_default"] == 2.0  # medians 1.1 / 0.55
    assert rows["onednn"]["losses_equal_default"] and rows["onednn"]["program_as_default"]
    assert rows["onednn"]["percent_of_gemm_peak"] == round(100 * (10.0 / 0.55) / 100.0, 1)
    eigen = rows["ynn off (Eigen)"]
    assert eigen["rounds"] == 1 and eigen["speedup_vs_default"] == 0.5
    assert eigen["losses_equal_default"] is False and eigen["program_as_default"] is False
    table = xla_flags.markdown(list(rows.values()), dict(time="t", cpus=2, commit="c", load_before=[1], load_after=[1],
                                                         peak_gflops=100.0, rounds=2, steps=2))
    assert "convolution x3 (changed)" in table


def test_xla_flags_needs_the_default_variant():
    from bench import xla_flags

    with pytest.raises(SystemExit):
        xla_flags.main(["--variants", "onednn"])


def test_compare_commits_ratio_and_loss_agreement():
    from bench.compare_commits import compare

    base = [dict(median_step_s=2.0, losses=[1.0, 0.5]), dict(median_step_s=2.2, losses=[1.0, 0.5])]
    head = [dict(median_step_s=1.0, losses=[1.000001, 0.6]), dict(error="exit 1")]
    row = compare(base, head)
    assert row["speedup"] == 2.1 and row["first_loss_agrees"] is True and row["head_rounds"] == [1.0]
    assert abs(row["max_loss_drift"] - 0.2) < 1e-9
    assert compare(base, [dict(median_step_s=1.0, losses=[1.1, 0.5])])["first_loss_agrees"] is False
    assert "error" in compare(base, [dict(error="exit 1")])


@pytest.mark.parametrize("args", [["--episodes", "1"], ["--torch_python", "/nonexistent/python"]])
def test_setfit_side_by_side_refuses_bad_arguments_before_running_anything(args):
    from bench import setfit_side_by_side

    with pytest.raises(SystemExit):
        setfit_side_by_side.main(args)


def test_throughput_w5_cases():
    args, _ = throughput.parse_args(["--workload", "W5", "--w5", "maml_5w,protonet_5w"])
    assert args.w5 == ("maml_5w", "protonet_5w")
    with pytest.raises(SystemExit):
        throughput.parse_args(["--workload", "W5", "--w5", "protonet_7w"])


def test_reptile_inner_state_runs_both_variants_and_records_them(image_root, tmp_path):
    from bench import reptile_inner_state
    from fewjax.methods import resolve_platform
    from tests.conftest import tiny_config

    config = resolve_platform(tiny_config(image_root, "reptile", inner_optimizer="adam", inner_lr=1e-2, inner_steps=3,
                                          inner_batch_size=3, eval_inner_steps=2))
    out = tmp_path / "r.jsonl"
    final = {v: reptile_inner_state.run(v, steps=2, every=1, schedule=10, val_episodes=4, config=config, results=out)
             for v in ("carried", "per_task")}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["variant"], r["step"]) for r in rows] == [("carried", 1), ("carried", 2), ("per_task", 1),
                                                         ("per_task", 2)]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in rows)
    # both start fresh, but carried passes the first task's state to the next task, per_task does not
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(final["carried"]),
                                                     jax.tree.leaves(final["per_task"])))


def test_stopping_reproduce_stops_train_py_and_still_records_the_segment(tmp_path, monkeypatch):
    import os

    from bench import reproduce

    class Training:  # train.py that is signalled while reproduce.py waits on it, and exits as train.py does
        returncode = None

        def __init__(self, *args, **kwargs):
            self.received = []

        def wait(self, timeout=None):
            if self.returncode is None:
                os.kill(os.getpid(), signal.SIGTERM)  # someone stops reproduce.py
            return self.returncode

        def send_signal(self, signum):
            self.received.append(signum)
            self.returncode = 128 + signum

    started = []
    monkeypatch.setattr(reproduce.subprocess, "Popen", lambda *a, **k: started.append(Training()) or started[-1])
    monkeypatch.setattr(reproduce, "latest_step", lambda workdir: 250)
    monkeypatch.setattr(reproduce, "commit", lambda: "abc1234")
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit, match="stopped by signal 15 at step 250 \\(segment recorded\\)"):
        reproduce.train_segment(tmp_path, [], {}, time_limit=60)
    assert started[0].received == [signal.SIGTERM]
    segment = json.loads((tmp_path / "segments.jsonl").read_text())
    assert segment["exit_code"] == 143 and segment["to_step"] == 250
    assert signal.getsignal(signal.SIGTERM) == handler
