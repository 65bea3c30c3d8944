"""`fewjax.load(workdir)`: a trained run back in research code, with its config, params, model and ready functions.

Example (a workdir written by `train.py`):
    >>> run = fewjax.load("runs/omniglot_protonet_5w1s")                               # doctest: +SKIP
    >>> features = run.embed(images)                       # metric methods: [n, d]     # doctest: +SKIP
    >>> labels = run.predict((support_x, support_y), query_x)  # any method: classes    # doctest: +SKIP
    >>> weights = run.adapt((support_x, support_y))        # MAML family, Reptile, iMAML # doctest: +SKIP

Text runs take lists of strings wherever images go.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fewjax.experiment.config import PRESET_MAX_LENGTH, base_config, validate
from fewjax.experiment.data import make_source
from fewjax.experiment.records import flatten
from fewjax.experiment.state import init_state, outer_optimizer
from fewjax.methods import Method, build_method, resolve_platform
from fewjax.text.datasets import TEXT_DATASETS
from fewjax.text.encoder import pretrained
from fewjax.experiment.checkpoint import Checkpoints, CorruptCheckpointError
from fewjax.types import Batch

logger = logging.getLogger(__name__)


class Run:
    """A restored run: `config`, `params`, `model` (the Flax module), `method`, the restored `step`, and the
    functions `embed`, `predict`, `adapt` (jitted once per input shape)."""

    def __init__(self, config, params, method: Method, *, step: int, checkpoint: str, tokenizer=None):
        self.config, self.params, self.method = config, params, method
        self.model, self.step, self.checkpoint, self.tokenizer = method.model, step, checkpoint, tokenizer

    def __repr__(self) -> str:
        return (f"Run(method={self.config.method!r}, dataset={self.config.dataset!r}, step={self.step}, "
                f"checkpoint={self.checkpoint!r})")

    def embed(self, x) -> np.ndarray:
        """Features `[n, d]` of images (or strings): metric methods and every text method."""
        if self.method.embed is None:
            raise ValueError(f"method {self.config.method!r} has no embedding; use run.predict or run.adapt.")
        return np.asarray(_jit(self.method.embed)(self.params, self.inputs(x)))

    def predict(self, support, query_x) -> np.ndarray:
        """Class indices `[n_query]` of one episode: `support` is `(x, y)` with labels 0..ways-1."""
        return np.asarray(_jit(self.method.predict)(self.params, self.support(support), self.inputs(query_x)))

    def adapt(self, support) -> Any:
        """The params adapted to `support` (`(x, y)`), as the run's test-time inner loop does."""
        if self.method.adapt is None:
            raise ValueError(f"method {self.config.method!r} does not adapt its weights per task; use run.embed "
                             "or run.predict.")
        return _jit(self.method.adapt)(self.params, self.support(support))

    def inputs(self, x) -> np.ndarray:
        """Model inputs: images as float32 arrays; strings tokenised as in training."""
        if self.config.dataset in TEXT_DATASETS:
            if isinstance(x, str) or not all(isinstance(s, str) for s in x):
                raise ValueError("a text run takes a list of strings.")
            return self.tokenizer(list(x), max_length=int(self.config.text.max_length) or None)
        return np.asarray(x, np.float32)

    def support(self, support) -> Batch:
        x, y = support
        y = np.asarray(y, np.int32)
        ways = self.config.test_ways
        if self.method.adapt is not None and self.config.dataset != "sinusoid" and (y.min() < 0 or y.max() >= ways):
            raise ValueError(f"support labels must lie in 0..{ways - 1} (this {self.config.method} run has a "
                             f"{ways}-way head); got {sorted(set(y.tolist()))}.")
        return Batch(self.inputs(x), y.astype(np.float32) if self.config.dataset == "sinusoid" else y)


def load(workdir: str | Path, checkpoint: str | int = "best", *, overrides: dict | None = None,
         ema: bool = False) -> Run:
    """Restores `workdir`'s checkpoint ("best", "latest" or a step) with the config it was trained with.

    `overrides`: config keys to change first (`{"test_ways": 20}`; what evaluate.py's flags set). `ema`: the
    run's exponential moving average of the params (an error if it kept none). Without a validated checkpoint,
    "best" falls back to the latest (`run.checkpoint` says which).
    """
    workdir = Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise FileNotFoundError(f"--workdir={workdir}: no checkpoints/ folder there; pass the workdir of a "
                                "train.py run (python train.py --config ... --workdir DIR).")
    ckpts = Checkpoints(workdir / "checkpoints", read_only=True)
    try:
        which = int(checkpoint) if str(checkpoint).isdigit() else str(checkpoint)
        if which == "best" and ckpts.best_step() is None:
            which = "latest"
        saved = ckpts.read_config(which)
        check_same_kind_of_data(saved, overrides)
        overrides = with_preset_length(saved, overrides)
        config = restored_config(saved, overrides)
        if ema and not config.ema_decay > 0:  # refused before anything is built or read
            raise ValueError("ema=True (evaluate.py --ema): this run kept no moving average of its weights "
                             f"(config.ema_decay={config.ema_decay}); evaluate without --ema, or train with "
                             "--config.ema_decay above 0 (e.g. 0.999).")
        trained = restored_config(saved) if "dataset" in (overrides or {}) else config
        method = build_method(config)
        example, classes = example_input(config), task_classes(trained)
        target = jax.eval_shape(lambda key: init_state(method.init(key, example), outer_optimizer(config),
                                                       ema=config.ema_decay > 0, task_classes=classes),
                                jax.random.key(0))
        try:
            state, info = ckpts.restore(target, step=which)
        except CorruptCheckpointError as e:
            raise CorruptCheckpointError(f"--checkpoint {checkpoint}: {e}. --checkpoint latest evaluates the newest "
                                         "intact checkpoint.") from None
    finally:
        ckpts.close()
    params = state.ema_params if ema else state.params
    tokenizer = pretrained(config)[2] if config.dataset in TEXT_DATASETS else None
    return Run(config, params, method, step=int(info["step"]), checkpoint=str(which), tokenizer=tokenizer)


def restored_config(saved: dict, overrides: dict | None = None):
    """The saved config on today's defaults (keys added since keep their defaults), with `overrides`, validated
    and resolved for this backend."""
    config = base_config()
    config.update_from_flattened_dict(flatten(saved))
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    validate(config)
    return resolve_platform(config)


def check_same_kind_of_data(saved: dict, overrides: dict | None) -> None:
    """A `dataset` override may move a text checkpoint to another text dataset (a CLINC150-trained encoder scored on
    FewRel), never between text and images."""
    new = (overrides or {}).get("dataset")
    if new is None:
        return
    old = saved.get("dataset")
    if (old in TEXT_DATASETS) != (new in TEXT_DATASETS):
        kind = "a text" if old in TEXT_DATASETS else "an image"
        raise ValueError(f"config.dataset={new!r}: this is {kind} checkpoint (trained on {old!r}); pass another "
                         f"{'text dataset, one of ' + str(TEXT_DATASETS) if old in TEXT_DATASETS else 'image dataset'}"
                         ", or --data for your own files.")


def with_preset_length(saved: dict, overrides: dict | None) -> dict | None:
    """A `dataset` override to another named text dataset without a `text.max_length` one reads the new dataset at
    its preset length (FewRel's 64 tokens, not a CLINC150 run's 32, which would cut most FewRel sentences)."""
    new = (overrides or {}).get("dataset")
    if new == saved.get("dataset") or new not in PRESET_MAX_LENGTH or "text.max_length" in overrides:
        return overrides
    length = PRESET_MAX_LENGTH[new]
    logger.info("--dataset=%s: sequences of %d tokens, the %s presets' length (--max_length changes it)", new,
                length, new)
    return {**overrides, "text.max_length": length}


def task_classes(config) -> int | None:
    """The training split's class count when the run sampled its tasks adaptively (its checkpoints hold a
    difficulty estimate per class), else None."""
    return make_source(config, "train").num_classes if config.task_sampling == "adaptive" else None


def example_input(config) -> np.ndarray:
    """An input of the shape the run's model was built for (parameter shapes depend on it)."""
    if config.dataset == "sinusoid":
        return np.zeros((1, 1), np.float32)
    if config.dataset in TEXT_DATASETS:
        return np.zeros((1, 8), np.int32)
    channels = 1 if config.dataset == "omniglot" else 3
    return np.zeros((1, config.image_size, config.image_size, channels), np.float32)


@functools.lru_cache(maxsize=64)
def _jit(fn):
    return jax.jit(fn)


__all__ = ["Run", "load"]
