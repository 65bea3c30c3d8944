"""bench/adaptive_sampling.py: the variants' flags and the table (latest row per variant and step count)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench import adaptive_sampling as ad  # noqa: E402


def test_variants_differ_only_in_the_sampling_switch():
    uniform, adaptive = ad.train_args("uniform", 200), ad.train_args("adaptive", 200)
    assert "--config.total_steps=200" in uniform and "--config.ways=20" in uniform
    assert [a for a in adaptive if a not in uniform] == ["--config.task_sampling=adaptive"]
    assert [a for a in uniform if a not in adaptive] == ["--config.task_sampling=uniform"]


def test_table_compares_with_uniform_at_the_same_steps(tmp_path):
    path = tmp_path / "adaptive.jsonl"
    row = dict(trained_steps=200, ci95=0.007, seconds_per_step=1.5, train_load_average=4.0, commit="abc")
    path.write_text("".join(json.dumps({**row, **r}) + "\n" for r in (
        {"variant": "uniform", "accuracy": 0.90, "effective_classes": None},
        {"variant": "adaptive", "accuracy": 0.91, "effective_classes": 3012.4},
        {"variant": "uniform", "accuracy": 0.92, "effective_classes": None})))
    lines = ad.table(path).splitlines()
    assert lines[2].startswith("| uniform | 92.00 ± 0.70 |  | 200 |  |")  # measured again: the latest row
    assert lines[3].startswith("| adaptive | 91.00 ± 0.70 | -1.00 | 200 | 3,012 |")
    assert "no bench/results" in ad.table(tmp_path / "missing.jsonl")
