"""What `evaluate.py` does: restore a workdir's checkpoint with its own config and score it on test episodes."""
from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import jax
from absl import flags

from fewjax.eval.evaluate import TEST_SEED, VAL_SEED, evaluate
from fewjax.train.checkpoint import Checkpoints, CorruptCheckpointError
from fewjax.train.cli import FlagError
from fewjax.train.config import base_config, validate
from fewjax.train.data import make_sampler
from fewjax.train.loop import describe, flatten, write_json
from fewjax.train.methods import build_method, outer_optimizer
from fewjax.train.step import init_state
from fewjax.train.text import TEXT_DATASETS

logger = logging.getLogger(__name__)

OVERRIDES = {"test_ways": "ways", "test_shots": "shots", "test_queries": "queries",
             "eval_inner_steps": "inner_steps", "data_dir": "data_dir", "text.text_column": "text_column",
             "text.label_column": "label_column", "within_alphabet": "within_alphabet"}
"""Config key -> the evaluate.py flag that sets it."""
SAMPLER_WORDS = {"test_ways": "ways", "test_shots": "shots", "test_queries": "queries"}
"""Config key -> the name the episode sampler's errors give it."""
TEXT_FILES = (".csv", ".tsv", ".jsonl", ".json")


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
        flags.DEFINE_enum("invert", "auto", ["auto", "true", "false"], "Image folders given with --data: make "
                          "the foreground (ink) high. auto inverts grayscale images with a light background (with "
                          "a warning), true / false force it.")
        flags.DEFINE_string("text_column", None, "Text checkpoints with --data FILE: the column holding the text.")
        flags.DEFINE_string("label_column", None, "Text checkpoints with --data FILE: the column holding the label.")
        flags.DEFINE_string("data_dir", None, "Where the dataset files are, if not where training found them.")
        flags.DEFINE_bool("ema", False, "Evaluate the EMA parameters (if the run kept them).")
        flags.DEFINE_bool("within_alphabet", None, "Omniglot: Lake's one-shot test, every episode's classes from one "
                          "alphabet, support and query drawn by different people (default: the run's config).")


EVAL_FLAGS = _Flags()


def evaluate_workdir(f, *, save: bool = True) -> dict:
    """Scores the checkpoint `f.checkpoint` of `f.workdir` (flags as defined above) and returns the record.

    With `save`, the record is also written to WORKDIR/eval_<split>.json (a warning if that fails: see
    `save_record`). Raises `FlagError` naming the flag when a flag value cannot work with this checkpoint.
    """
    workdir = Path(f.workdir)
    if not (workdir / "checkpoints").is_dir():
        raise FileNotFoundError(f"--workdir={workdir}: no checkpoints/ folder there; pass the workdir of a "
                                "train.py run (python train.py --config ... --workdir DIR).")
    ckpts = Checkpoints(workdir / "checkpoints", read_only=True)
    try:
        which = int(f.checkpoint) if f.checkpoint.isdigit() else f.checkpoint
        if which == "best" and ckpts.best_step() is None:
            which = "latest"  # no validation metric (e.g. total_steps=0): the record says so
        config = base_config()
        config.update_from_flattened_dict(flatten(ckpts.read_config(which)))
        typed = set_overrides(config, f)
        with in_flag_terms(typed, sampler=False):
            validate(config)
        if f.data:
            check_data_kind(f.data, config)
        method = build_method(config)
        invert = {"auto": "auto", "true": True, "false": False}[getattr(f, "invert", "auto")]
        with in_flag_terms(typed, sampler=True):
            sampler = make_sampler(config, f.split, seed=TEST_SEED if f.split == "test" else VAL_SEED,
                                   data_path=f.data, invert=invert)
        example = sampler.sample(0).support.x
        target = init_state(method.init(jax.random.key(0), example), outer_optimizer(config),
                            ema=config.ema_decay > 0)
        try:
            state, info = ckpts.restore(target, step=which)
        except CorruptCheckpointError as e:
            raise CorruptCheckpointError(f"--checkpoint {f.checkpoint}: {e}. --checkpoint latest evaluates the newest "
                                         "intact checkpoint.") from None
        params = state.ema_params if f.ema and state.ema_params is not None else state.params
        metric = "loss" if config.dataset == "sinusoid" and not f.data else "accuracy"
        result = evaluate(method.evaluate, params, sampler, num_episodes=f.episodes, batch_size=f.batch_size,
                          seed=TEST_SEED if f.split == "test" else VAL_SEED, metric=metric, progress=True)
    finally:
        ckpts.close()
    record = describe(config, split=f.split, checkpoint=str(which), step=info["step"], result=result)
    record["data"] = f.data or config.dataset
    if save:
        save_record(workdir, record)
    return record


def save_record(workdir: Path, record: dict) -> bool:
    """Writes WORKDIR/eval_<split>.json; a read-only or full workdir is a warning, not a failure."""
    path = Path(workdir) / f"eval_{record['split']}.json"
    try:
        write_json(path, record)
    except OSError as e:
        logger.warning("could not write %s (%s); the result is the JSON record printed on stdout", path,
                       e.strerror or e)
        return False
    return True


def set_overrides(config, f) -> dict[str, str]:
    """Applies the flags that override config keys; returns `{config key: flag}` for those the user typed."""
    typed = {}
    for key, flag in OVERRIDES.items():
        value = getattr(f, flag, None)
        if value is not None:
            section, _, name = key.rpartition(".")
            (config[section] if section else config)[name] = value
            typed[key] = f"--{flag}"
    return typed


@contextlib.contextmanager
def in_flag_terms(typed: dict[str, str], *, sampler: bool):
    """Re-raises a ValueError of the block as a `FlagError` that names the flags the user typed, not config keys.

    `sampler`: the block builds the episode sampler, whose errors say `ways`, `shots`, `queries`.
    """
    try:
        yield
    except ValueError as e:
        message = str(e)
        for key, flag in typed.items():
            message = re.sub(rf"(?<![\w.])(config\.)?{re.escape(key)}\b", flag, message)
            word = SAMPLER_WORDS.get(key)
            if sampler and word:
                message = re.sub(rf"(?<![\w.-]){word}\b", flag, message)
        if message == str(e):
            raise
        raise FlagError(message) from e


def check_data_kind(data: str, config) -> None:
    """`--data` must be the kind of data the checkpoint's model reads: a folder of images, or a text file."""
    path = Path(data)
    if config.dataset in TEXT_DATASETS or not path.is_file():
        return
    kind = "a CSV file: text data" if path.suffix.lower() == ".csv" else (
        f"a {path.suffix} file: text data" if path.suffix.lower() in TEXT_FILES else "a file")
    raise FlagError(f"--data={data} is {kind}, but this checkpoint is an image model (dataset {config.dataset!r}, "
                    f"method {config.method!r}); pass an image folder PATH/<class>/<image>.")
