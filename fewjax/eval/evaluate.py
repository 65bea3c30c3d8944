"""Few-shot evaluation: `evaluate(eval_fn, params, sampler)` over N fixed, seeded episodes.

Episodes are drawn by the sampler from `seed` alone (see `EpisodeSampler.eval_set`), so every run, method and
checkpoint is scored on the same tasks. They are evaluated in vmapped, jitted batches of `batch_size` (the last
batch is padded to the same shape, so one program serves all), prepared on a background thread. A batch whose
compiled program would need more than `memory_mb` (XLA's own plan: arguments, outputs and temporaries) is made
smaller before anything runs, so a 20-way test does not hold thousands of images' activations at once; the
episodes, and so the result, do not depend on the batch size. The 95% confidence interval is
`1.96 * std / sqrt(n)` with the sample standard deviation over episodes.

A long evaluation (600 SetFit episodes of fine-tuning take hours on a CPU) can be stopped and continued: with
`resume_file`, the per-episode values are written there after every batch, and a later call for the same
evaluation (params, episodes, metric, `resume_key`) scores only the episodes that are missing. The result is the
one an uninterrupted call returns.

Example:
    >>> import functools, jax, numpy as np, fewjax
    >>> from fewjax.data import ArraySource, episodes
    >>> src = ArraySource(np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32), np.arange(200) % 10,
    ...                   [str(i) for i in range(10)])
    >>> sampler = episodes(src, ways=5, shots=1, queries=3, seed=0)
    >>> kernel = functools.partial(fewjax.protonet_loss, lambda p, x: x, ways=5)
    >>> eval_fn = lambda params, tasks: jax.vmap(lambda t: kernel(params, t)[1])(tasks)
    >>> result = fewjax.evaluate(eval_fn, None, sampler, num_episodes=30, batch_size=8)
    >>> result["episodes"], 0.0 <= result["accuracy"] <= 1.0
    (30, True)
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np
from tqdm.auto import tqdm

from fewjax.data.pipeline import prefetch
from fewjax.experiment.records import flatten
from fewjax.placement import EVAL_MEMORY_MB, batch_sharding, fetch, map_per_device

logger = logging.getLogger(__name__)

VAL_SEED = 1_000_003
"""Seed of the validation episodes: fixed, and used by no training run."""
TEST_SEED = 2_000_003
"""Seed of the test episodes."""


def evaluate(
    eval_fn: Callable,
    params,
    sampler,
    *,
    num_episodes: int = 600,
    batch_size: int = 50,
    seed: int = TEST_SEED,
    metric: str = "accuracy",
    mesh=None,
    progress: bool = False,
    memory_mb: float = EVAL_MEMORY_MB,
    resume_file: str | os.PathLike | None = None,
    resume_key: str | Mapping[str, Any] = "",
    resume_defaults: Mapping[str, Any] | None = None,
) -> dict:
    """Scores `params` on `num_episodes` seeded episodes of `sampler`.

    Args:
      eval_fn: `eval_fn(params, tasks) -> {name: [B] per-task values}` for tasks with a leading axis.
      params: passed to `eval_fn`.
      sampler: an episode sampler with `eval_batches(num_episodes, seed=, batch_size=, start=)`.
      num_episodes, batch_size, seed: the episode set and how many are evaluated per call.
      metric: the per-task value to summarise ("accuracy"; "loss" for regression).
      mesh: shard each batch's task axis over all devices of this mesh (batch_size is rounded up to a multiple
        of its size; the padding episodes are not scored); each device evaluates its own episodes with the
        one-device program. Every process passes the same episodes.
      progress: show a progress bar.
      memory_mb: the most memory one batch's program may plan for, per device; `batch_size` is lowered (to
        the largest batch whose planned memory fits, at least one episode per device) when it needs more.
      resume_file: keep the per-episode values in this file as they are scored, and start from the values it
        holds when they are of this evaluation: the same params (by content), seed, metric and `resume_key` (a
        file of more episodes serves a smaller num_episodes; of fewer, the rest are scored and added). A file of
        another evaluation, or one that cannot be read, is started afresh and overwritten. Single-process runs
        only: ignored when `jax.process_count() > 1`.
      resume_key: whatever else decides the per-episode values (the method's test settings): a string, or a
        flat mapping of named settings (`fewjax.experiment.records.config_key(config)`).
      resume_defaults: with a mapping `resume_key`, each setting's default (`config_defaults()`). A setting that
        a file's key lacks (one added since the file was written) counts as having had its default there, so
        the file still serves an evaluation that leaves the new setting at its default, and no other.

    Returns:
      `{metric, "ci95", "std", "episodes", "seconds", "batch_size", "resumed_episodes", "resumed_seconds"}`
      (ci95 = 1.96 * std / sqrt(n); seconds: summed over the calls that scored these episodes; batch_size: the
      episodes per call that ran, after the memory bound; resumed_*: the values read from `resume_file` rather
      than scored by this call, and the seconds earlier calls took to score them).
    """
    if num_episodes < 1 or batch_size < 1 or not memory_mb > 0:
        raise ValueError(f"evaluate: num_episodes={num_episodes}, batch_size={batch_size} and "
                         f"memory_mb={memory_mb} must be positive.")
    batch_size = min(batch_size, num_episodes)
    resume = None
    if resume_file is not None and jax.process_count() == 1:
        resume = _Resume(Path(resume_file), _identity(params, seed, metric, resume_key), resume_defaults or {})
    done, earlier_seconds = resume.load() if resume else (np.zeros(0), 0.0)
    done = done[:num_episodes]
    start = time.perf_counter()

    def save(new: list) -> None:
        if resume:
            resume.save(np.concatenate([done, *new]), earlier_seconds + time.perf_counter() - start)

    new = []
    if done.size < num_episodes:
        new, batch_size = _score(eval_fn, params, sampler, num_episodes, batch_size, seed, metric, mesh,
                                 memory_mb, progress, first_episode=done.size, after_batch=save)
    v = np.concatenate([done, *new]).astype(np.float64)
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {
        metric: float(v.mean()),
        "ci95": 1.96 * std / float(np.sqrt(v.size)),
        "std": std,
        "episodes": int(v.size),
        "seconds": earlier_seconds + time.perf_counter() - start,
        "batch_size": batch_size,
        "resumed_episodes": int(done.size),
        "resumed_seconds": earlier_seconds,
    }


def _score(eval_fn, params, sampler, num_episodes, batch_size, seed, metric, mesh, memory_mb, progress, *,
           first_episode: int, after_batch: Callable) -> tuple[list, int]:
    """Scores episodes `first_episode`, ..., `num_episodes - 1`: their values (a list of per-batch arrays, passed
    to `after_batch` after every batch) and the batch size that ran."""
    devices = 1 if mesh is None else mesh.size
    scored = _metric_only(eval_fn, metric)
    if mesh is not None:
        batch_size = -(-batch_size // devices) * devices
        place = lambda t: jax.device_put(t, batch_sharding(mesh))  # noqa: E731
        run = _per_device(scored, mesh)
    else:
        place = jax.device_put
        run = jax.jit(scored)  # compiled once per (scored, mesh) and shapes: `_compiled` keeps the program
    while True:
        chunks = (_pad(t, batch_size) for t in sampler.eval_batches(num_episodes, seed=seed, batch_size=batch_size,
                                                                     start=first_episode))
        first = next(chunks)
        program = _compiled(run, (scored, mesh), params, place(first[0]))
        planned = _planned_mb(program)
        if planned <= memory_mb or batch_size == devices:
            break
        per_device = batch_size // devices
        fits = max(int(memory_mb / (planned / per_device)), 1)  # planned memory grows at most linearly in episodes
        batch_size = min(fits, per_device - 1) * devices
    values = []
    with prefetch(itertools.chain([first], chunks), size=2) as batches, \
            tqdm(total=num_episodes, initial=first_episode, desc="evaluate", disable=not progress,
                 unit="episode") as bar:
        for tasks, n in batches:
            values.append(fetch(program(params, place(tasks)))[:n])
            bar.update(n)
            after_batch(values)
    return values, batch_size


def _identity(params, seed: int, metric: str, key) -> dict:
    """What decides an evaluation's per-episode values: the params by content, and the rest (a mapping key as
    its JSON form, as a file gives it back). Not the number of episodes: episode i of a seed is the same in a set
    of any size."""
    digest = hashlib.sha256(str(jax.tree.structure(params)).encode())
    for leaf in jax.tree.leaves(jax.device_get(params)):
        a = np.ascontiguousarray(leaf)
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(a.tobytes())
    return {"params": digest.hexdigest(), "seed": int(seed), "metric": metric, "key": _as_json(key)}


def _as_json(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _same_evaluation(stored: dict, current: dict, defaults: Mapping) -> bool:
    """Whether a file's identity is this evaluation's; settings missing from its key take their defaults."""
    if not isinstance(stored, dict):
        return False
    old, new = stored.get("key"), current["key"]
    if isinstance(new, dict) and isinstance(old, str):  # written when keys were the config as one JSON string
        try:
            old = flatten(json.loads(old))
        except (ValueError, AttributeError):
            return False
    if isinstance(new, dict) and isinstance(old, dict):
        old = {**{k: v for k, v in _as_json(dict(defaults)).items() if k in new}, **old}
    return {**stored, "key": old} == current


class _Resume:
    """The per-episode values of one evaluation in an .npz file, rewritten whole (and atomically) after every
    batch; a failed write is a warning, after which the evaluation goes on without saving."""

    def __init__(self, path: Path, identity: dict, defaults: Mapping):
        self.path, self.identity, self.defaults = path, identity, defaults

    def load(self) -> tuple[np.ndarray, float]:
        try:
            with np.load(self.path) as f:
                if _same_evaluation(json.loads(str(f["identity"])), self.identity, self.defaults):
                    logger.info("evaluate: %d episodes read from %s", f["values"].size, self.path)
                    return np.asarray(f["values"], np.float64), float(f["seconds"])
            logger.info("evaluate: %s holds another evaluation; starting afresh", self.path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError) as e:
            logger.warning("evaluate: cannot read %s (%s); starting afresh", self.path, e)
        return np.zeros(0), 0.0

    def save(self, values: np.ndarray, seconds: float) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, identity=np.array(json.dumps(self.identity, sort_keys=True)), values=values,
                         seconds=np.array(seconds))
            os.replace(tmp, self.path)
        except OSError as e:
            logger.warning("evaluate: cannot write %s (%s); this evaluation will not be resumable", self.path,
                           e.strerror or e)
            self.path = None


_PROGRAMS: dict = {}


def _compiled(run, name, params, tasks):
    """`run` compiled for these shapes and placements, kept under `name` across calls (validation reuses it)."""
    leaves, tree = jax.tree.flatten((params, tasks))
    key = (name, tree, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))
    if key not in _PROGRAMS:
        if len(_PROGRAMS) >= 16:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = run.lower(params, tasks).compile()
    return _PROGRAMS[key]


def _planned_mb(program) -> float:
    """XLA's planned memory of a compiled program, per device, in MB (0 where the backend does not say)."""
    m = program.memory_analysis()
    if m is None:
        return 0.0
    return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
            - m.alias_size_in_bytes) / 2**20


@functools.lru_cache(maxsize=8)
def _metric_only(eval_fn: Callable, metric: str) -> Callable:
    """`eval_fn` returning only `metric`: XLA then drops what only the other metrics need (MAML's passes before
    adaptation: 40% of its evaluation). One function object per (eval_fn, metric), so programs are reused."""
    def scored(params, tasks):
        out = eval_fn(params, tasks)
        if metric not in out:
            raise ValueError(f"evaluate: metric={metric!r} is not among the method's metrics {sorted(out)}.")
        return out[metric]

    return scored


@functools.lru_cache(maxsize=8)
def _per_device(eval_fn: Callable, mesh) -> Callable:
    """`eval_fn` run by each device on its own episodes, jitted once per (function, mesh): validation reuses it."""
    return jax.jit(map_per_device(eval_fn, mesh))


def _pad(tasks, size: int):
    n = jax.tree.leaves(tasks)[0].shape[0]
    if n == size:
        return tasks, n
    return jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)]), tasks), n
