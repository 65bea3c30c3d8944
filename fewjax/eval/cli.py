"""What `evaluate.py` does: restore a workdir's checkpoint with its own config and score it on test episodes."""
from __future__ import annotations

from pathlib import Path

import jax
from absl import flags

from fewjax.eval.evaluate import TEST_SEED, VAL_SEED, evaluate
from fewjax.train.checkpoint import Checkpoints
from fewjax.train.config import base_config, validate
from fewjax.train.data import make_sampler
from fewjax.train.loop import describe, flatten, write_json
from fewjax.train.methods import build_method, outer_optimizer
from fewjax.train.step import init_state


class _Flags:
    def define(self):
        flags.DEFINE_string("workdir", None, "The training run's workdir.", required=True)
        flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number.")
        flags.DEFINE_enum("split", "test", ["test", "val"], "Which classes to evaluate on.")
        flags.DEFINE_integer("episodes", 600, "Number of episodes.")
        flags.DEFINE_integer("batch_size", 50, "Episodes per vmapped batch.")
        flags.DEFINE_integer("ways", None, "Override the test ways.")
        flags.DEFINE_integer("shots", None, "Override the test shots.")
        flags.DEFINE_integer("queries", None, "Override the test queries per class.")
        flags.DEFINE_integer("inner_steps", None, "Override the test-time inner steps (MAML family, Reptile).")
        flags.DEFINE_string("data", None, "Evaluate on your own data instead: an image folder (PATH/<class>/<image>), "
                            "or a .csv/.tsv/.jsonl file for a text checkpoint; every class in it a test class.")
        flags.DEFINE_string("text_column", None, "Text checkpoints with --data FILE: the column holding the text.")
        flags.DEFINE_string("label_column", None, "Text checkpoints with --data FILE: the column holding the label.")
        flags.DEFINE_string("data_dir", None, "Where the dataset files are, if not where training found them.")
        flags.DEFINE_bool("ema", False, "Evaluate the EMA parameters (if the run kept them).")
        flags.DEFINE_bool("within_alphabet", None, "Omniglot: Lake's one-shot test, every episode's classes from one "
                          "alphabet, support and query drawn by different people (default: the run's config).")


EVAL_FLAGS = _Flags()


def evaluate_workdir(f) -> dict:
    workdir = Path(f.workdir)
    if not (workdir / "checkpoints").is_dir():
        raise FileNotFoundError(f"--workdir={workdir}: no checkpoints/ folder there; pass the workdir of a "
                                "train.py run (python train.py --config ... --workdir DIR).")
    ckpts = Checkpoints(workdir / "checkpoints", read_only=True)
    try:
        which = int(f.checkpoint) if f.checkpoint.isdigit() else f.checkpoint
        if which == "best" and ckpts.best_step() is None:
            which = "latest"
        config = base_config()
        config.update_from_flattened_dict(flatten(ckpts.read_config(which)))
        overrides = {"test_ways": f.ways, "test_shots": f.shots, "test_queries": f.queries,
                     "eval_inner_steps": f.inner_steps, "data_dir": f.data_dir, "within_alphabet": f.within_alphabet}
        for key, value in overrides.items():
            if value is not None:
                config[key] = value
        if f.text_column is not None:
            config.text.text_column = f.text_column
        if f.label_column is not None:
            config.text.label_column = f.label_column
        validate(config)
        method = build_method(config)
        sampler = make_sampler(config, f.split, seed=TEST_SEED if f.split == "test" else VAL_SEED, data_path=f.data)
        example = sampler.sample(0).support.x
        target = init_state(method.init(jax.random.key(0), example), outer_optimizer(config),
                            ema=config.ema_decay > 0)
        state, info = ckpts.restore(target, step=which)
        params = state.ema_params if f.ema and state.ema_params is not None else state.params
        metric = "loss" if config.dataset == "sinusoid" and not f.data else "accuracy"
        result = evaluate(method.evaluate, params, sampler, num_episodes=f.episodes, batch_size=f.batch_size,
                          seed=TEST_SEED if f.split == "test" else VAL_SEED, metric=metric, progress=True)
    finally:
        ckpts.close()
    record = describe(config, split=f.split, checkpoint=str(f.checkpoint), step=info["step"], result=result)
    record["data"] = f.data or config.dataset
    write_json(workdir / f"eval_{f.split}.json", record)
    return record

