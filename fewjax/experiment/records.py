"""The JSON records a run writes (eval_test.json, eval_<split>.json) and the flattened view of its config."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jax

from fewjax.experiment.config import base_config
from fewjax.text.datasets import TEXT_DATASETS


def describe(config, *, split, checkpoint, step, result, features_seconds=None) -> dict:
    """The evaluation record every command prints: what was evaluated, on what, and the score; beside the score,
    `published` (the config's published result for this setting) when the config names one, and
    `features_seconds` (the time taken to embed each example once, before the episodes' `seconds`) when given."""
    published = published_result(config, split)
    return {
        "method": config.method, "dataset": config.dataset, "split": split, "ways": config.test_ways,
        "shots": config.test_shots, "queries": config.test_queries, "checkpoint": checkpoint, "step": int(step),
        **({"within_alphabet": True} if config.within_alphabet and split == "test" else {}),
        **({"transductive": False} if not config.get("transductive", True) else {}),
        **({"eval_inner_batch_size": int(config.eval_inner_batch_size)}
           if config.get("eval_inner_batch_size") else {}),
        **({"max_length": int(config.text.max_length)} if config.dataset in TEXT_DATASETS else {}), **result,
        **({"features_seconds": features_seconds} if features_seconds is not None else {}),
        **({"published": published} if published else {}),
    }


NOT_IN_TEST_VALUES = ("total_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                      "val_episodes", "test_episodes", "eval_batch_size", "eval_memory_mb", "early_stop_patience",
                      "test_resume_file")
"""Config keys that change no test episode's score (given the params): the schedule, how many episodes are
evaluated per call, and where the scores are kept."""


def config_key(config) -> dict:
    """The config's values (flattened: {"optim.lr": 1e-3}) without `NOT_IN_TEST_VALUES`: an evaluation's `resume_key` (`fewjax.evaluate`), so a
    test cut short continues only under the settings it began with."""
    return {k: v for k, v in flatten(config.to_dict()).items() if k not in NOT_IN_TEST_VALUES}


def config_defaults() -> dict:
    """Every config key's default (`base_config()`): an evaluation's `resume_defaults`, so scores kept before a
    key was added still serve a config that leaves the new key at its default."""
    return flatten(base_config().to_dict())


def published_result(config, split: str) -> str:
    """`config.published` when this evaluation is the setting it was published for: the test split at
    `config.published_setting`'s ways and shots, transductive, not within one alphabet; else ""."""
    setting = f"{config.test_ways}w{config.test_shots}s"
    same = (split == "test" and config.get("published_setting", "") == setting and not config.within_alphabet
            and config.get("transductive", True))
    return config.get("published", "") if same else ""


def write_json(path: Path, record: dict) -> None:
    """Atomically writes `record` (process 0 only)."""
    if jax.process_index() != 0:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only by a failed write


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config dict as `{"a.b": value}`."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
