"""bench/text_fewshot.py around `train_and_evaluate` (faked: no model, seconds)."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import text_fewshot  # noqa: E402


def _args(tmp_path):
    return SimpleNamespace(model="minilm", data_dir="data", episodes=600, test_queries=15, eval_batch_size=10,
                           meta_batch_size=4, steps=30, fomaml_steps=20, fomaml_inner_steps=5, val_episodes=20,
                           workdirs=str(tmp_path / "runs"), progress_dir=str(tmp_path / "progress"),
                           support_filter=0.95, keep_workdirs=False)


def test_a_signal_during_meta_training_exits_with_its_code_and_keeps_the_workdir(tmp_path, monkeypatch, capsys):
    def stopped(config, workdir, progress):
        Path(workdir, "checkpoints").mkdir(parents=True)
        return {"interrupted_at_step": 7, "signal": 15}
    monkeypatch.setattr(text_fewshot, "train_and_evaluate", stopped)
    with pytest.raises(SystemExit) as exit_:
        text_fewshot.run_one("prompt_meta", "fewrel_5w5s", _args(tmp_path))
    assert exit_.value.code == 143
    assert (tmp_path / "runs" / "prompt_meta_fewrel_5w5s_30steps_600x15" / "checkpoints").is_dir()
    assert "signal 15 at step 7; run the same command again" in capsys.readouterr().err


@pytest.mark.parametrize("method, head", [("setfit", "logistic"), ("setfit_meta", "logistic"),
                                          ("setfit_meta_prototype", "prototype")])
def test_setfit_variants_pick_their_head_and_the_meta_variants_meta_train(tmp_path, monkeypatch, method, head):
    seen = {}

    def finished(config, workdir, progress):
        seen.update(head=config.text.setfit_head, steps=config.total_steps, method=config.method)
        Path(workdir).mkdir(parents=True)
        return {"accuracy": 0.5, "ci95": 0.01, "episodes": 600, "seconds": 1.0, "resumed_seconds": 0.0,
                "resumed_episodes": 0, "max_length": 64}
    monkeypatch.setattr(text_fewshot, "train_and_evaluate", finished)
    record = text_fewshot.run_one(method, "fewrel_5w1s", _args(tmp_path))
    assert seen == {"head": head, "steps": 0 if method == "setfit" else 30, "method": "setfit"}
    assert (record["method"], record["train_steps"], record["eval_inner_steps"]) == (method, seen["steps"], 20)
