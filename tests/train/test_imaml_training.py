"""iMAML through the trainer: trains a few steps, evaluates, resumes bit for bit; its config keys are validated."""
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from fewjax.train import train_and_evaluate
from fewjax.experiment.config import validate
from tests.conftest import tiny_config
from tests.train.test_loop import final_params

IMAML = {"inner_steps": 3, "eval_inner_steps": 3, "inner_lr": 0.1, "imaml_cg_steps": 2, "imaml_cg_damping": 1.0}


@pytest.mark.slow  # three runs, each compiling its step and evaluator (minutes on a busy 2-core CPU); the default
# suite trains and evaluates iMAML in tests/train/test_loop.py (METHODS)
def test_imaml_trains_evaluates_and_resumes_bit_for_bit(image_root, tmp_path):
    make = lambda: tiny_config(image_root, "imaml", **IMAML)
    straight = make()
    record = train_and_evaluate(straight, tmp_path / "a", progress=False)
    assert record["method"] == "imaml" and 0.0 <= record["accuracy"] <= 1.0
    first = make()
    first.total_steps = first.checkpoint_every  # stop half way, then start again in the same workdir
    train_and_evaluate(first, tmp_path / "b", progress=False)
    train_and_evaluate(make(), tmp_path / "b", progress=False)
    a, b = final_params(tmp_path / "a", straight), final_params(tmp_path / "b", straight)
    assert int(a.step) == int(b.step) == straight.total_steps
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("key, value", [("imaml_lam", 0.0), ("imaml_cg_steps", -1), ("imaml_cg_damping", -1.0)])
def test_bad_imaml_keys_are_named(key, value, image_root):
    config = tiny_config(image_root, "imaml", **{key: value})
    with pytest.raises(ValueError, match=f"config.{key}="):
        validate(config)


@pytest.mark.parametrize("preset, ways, steps", [("5w1s", 5, 16), ("5w5s", 5, 16), ("20w1s", 20, 25), ("20w5s", 20, 25)])
def test_presets_carry_the_reference_settings(preset, ways, steps):
    path = Path(__file__).resolve().parents[2] / "configs" / "omniglot_imaml.py"
    spec = importlib.util.spec_from_file_location("omniglot_imaml", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(preset)
    validate(c)
    assert (c.method, c.ways, c.inner_steps, c.eval_inner_steps) == ("imaml", ways, steps, steps)
    assert (c.imaml_lam, c.imaml_cg_steps, c.inner_lr) == (2.0, 5, 0.1)
