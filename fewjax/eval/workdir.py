"""What `evaluate.py` does: load a workdir's checkpoint with its own config (`fewjax.load`) and score it on test
episodes; flag values that cannot work are reported in the terms of the flags the user typed."""
from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from fewjax.data import ClassesTooSmall
from fewjax.eval.evaluate import EVAL_MEMORY_MB, TEST_SEED, VAL_SEED, evaluate
from fewjax.experiment.config import FlagError
from fewjax.experiment.data import episodes_to_score, make_source
from fewjax.experiment.load import load
from fewjax.experiment.records import config_defaults, config_key, describe, write_json
from fewjax.text.datasets import TEXT_DATASETS

logger = logging.getLogger(__name__)

OVERRIDES = {"test_ways": "ways", "test_shots": "shots", "test_queries": "queries",
             "eval_inner_steps": "inner_steps", "eval_inner_batch_size": "inner_batch_size",
             "data_dir": "data_dir", "text.text_column": "text_column",
             "text.label_column": "label_column", "within_alphabet": "within_alphabet", "transductive": "transductive",
             "dataset": "dataset", "text.max_length": "max_length"}
"""Config key -> the evaluate.py flag that sets it."""
SAMPLER_WORDS = {"test_ways": "ways", "test_shots": "shots", "test_queries": "queries"}
"""Config key -> the name the episode sampler's errors give it."""
TEXT_FILES = (".csv", ".tsv", ".jsonl", ".ndjson")


def evaluate_workdir(f, *, save: bool = True) -> dict:
    """Scores the checkpoint `f.checkpoint` of `f.workdir` (evaluate.py's flags, `fewjax.cli.evaluate`) and
    returns the record. With `save`, the record is also written to WORKDIR/eval_<split>.json (a warning if that
    fails: see `save_record`). Raises `FlagError` naming the flag when a flag value cannot work with this checkpoint.
    An evaluation cut short continues where it stopped when the same command runs again (the scores so far are in
    WORKDIR/eval_<split>_progress.npz).
    """
    overrides = {key: getattr(f, flag) for key, flag in OVERRIDES.items() if getattr(f, flag, None) is not None}
    typed = {key: f"--{OVERRIDES[key]}" for key in overrides}
    if overrides.get("within_alphabet") and f.split != "test":
        raise FlagError(f"--within_alphabet is Lake's test protocol, on the evaluation alphabets; --split={f.split} "
                        "draws from the background alphabets: drop one of them.")
    if getattr(f, "invert", "auto") != "auto" and not f.data:
        raise FlagError(f"--invert={f.invert} is for the image folder given with --data; this run's own data needs "
                        "none: drop --invert.")
    if f.data:
        if overrides.get("within_alphabet"):
            raise FlagError(f"--within_alphabet draws each episode's classes from one Omniglot alphabet, but "
                            f"--data={f.data} has no alphabets: drop --within_alphabet, or drop --data to test on "
                            "Omniglot's evaluation alphabets.")
        overrides["within_alphabet"] = False  # a Lake-trained checkpoint's test protocol is not the --data one
        overrides.setdefault("text.max_length", 0)  # a user's texts at their own length, not the training cut
    with in_flag_terms(typed, sampler=False):
        run = load(f.workdir, f.checkpoint, overrides=overrides, ema=f.ema)
    config = run.config
    check_text_flags(f, config)
    if "eval_inner_steps" in overrides and run.method.adapt is None:
        raise FlagError(f"--inner_steps={f.inner_steps}: {config.method} adapts nothing per episode (it has no inner "
                        "loop), so inner steps would change nothing; drop --inner_steps.")
    if f.data:
        check_data_kind(f.data, config)
        read_text_file(f.data, config)
    invert = {"auto": "auto", "true": True, "false": False}[getattr(f, "invert", "auto")]
    seed = TEST_SEED if f.split == "test" else VAL_SEED
    with in_flag_terms(typed, sampler=True):
        try:
            scoring = episodes_to_score(run.method, run.params, config, f.split, seed=seed, data_path=f.data,
                                        invert=invert)
        except ClassesTooSmall as e:
            where = f"--data={f.data}" if f.data else f"the {f.split} split of {config.dataset}"
            raise FlagError(f"{e.short} classes of {where} have fewer examples than --shots + --queries = "
                            f"{e.shots} + {e.queries} (the smallest, {e.name!r}, has {e.smallest}): lower --queries "
                            f"or --shots to at most {e.smallest} in total"
                            + (", or remove those classes from the file." if f.data else ".")) from e
    metric = "loss" if config.dataset == "sinusoid" and not f.data else "accuracy"
    result = evaluate(scoring.eval_fn, run.params, scoring.sampler, num_episodes=f.episodes, batch_size=f.batch_size,
                      memory_mb=getattr(f, "memory_mb", EVAL_MEMORY_MB), seed=seed, metric=metric, progress=True,
                      resume_file=Path(f.workdir) / f"eval_{f.split}_progress.npz",
                      resume_key={**config_key(config), "eval.data": f.data, "eval.invert": invert},
                      resume_defaults=config_defaults())
    record = describe(config, split=f.split, checkpoint=run.checkpoint, step=run.step, result=result,
                      features_seconds=scoring.features_seconds)
    record["data"] = f.data or config.dataset
    if f.ema:
        record["ema"] = True
    if f.data:
        record.pop("published", None)  # the user's own classes: the benchmark's published result is no reference
    if save:
        save_record(Path(f.workdir), record)
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


def check_text_flags(f, config) -> None:
    """--max_length, --text_column and --label_column must change something: a text checkpoint's length, and the
    columns of a --data file."""
    given = [flag for flag in ("max_length", "text_column", "label_column") if getattr(f, flag, None) is not None]
    if config.dataset not in TEXT_DATASETS and given:
        raise FlagError(f"--{given[0]} is for text checkpoints; this one is an image model (dataset "
                        f"{config.dataset!r}): drop it.")
    columns = [flag for flag in given if flag != "max_length"]
    if columns and not f.data and config.dataset != "text_file":
        raise FlagError(f"--{columns[0]} names a column of the file given with --data; {config.dataset} has no "
                        "columns to choose: pass --data FILE, or drop it.")


def read_text_file(data: str, config) -> None:
    """Reads a text checkpoint's `--data` file (the source is cached for the evaluation): its problems (a missing
    column, a malformed row) become one `FlagError`."""
    if config.dataset not in TEXT_DATASETS:
        return
    try:
        make_source(config, "test", data_path=data)
    except FlagError:
        raise
    except ValueError as e:
        raise FlagError(f"--data: {e}") from e


def check_data_kind(data: str, config) -> None:
    """`--data` must be the kind of data the checkpoint's model reads: a folder of images, or a text file."""
    path = Path(data)
    if config.dataset in TEXT_DATASETS or not path.is_file():
        return
    kind = "a CSV file: text data" if path.suffix.lower() == ".csv" else (
        f"a {path.suffix} file: text data" if path.suffix.lower() in TEXT_FILES else "a file")
    raise FlagError(f"--data={data} is {kind}, but this checkpoint is an image model (dataset {config.dataset!r}, "
                    f"method {config.method!r}); pass an image folder PATH/<class>/<image>.")
