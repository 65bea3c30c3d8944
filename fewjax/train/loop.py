"""`train_and_evaluate(config, workdir)`: the training loop, the only reader of the config.

One run owns a workdir at a time (`fewjax.train.lock`): a second one raises `WorkdirBusyError` naming the holder.
Resumes from the newest complete, intact checkpoint in `workdir/checkpoints`; the step `s` draws its tasks from
`(config.seed, s)` alone, so a resumed run replays exactly the run that was interrupted, and `metrics.jsonl` keeps
one row per step (rows past the restored step are dropped). SIGTERM and SIGINT save a checkpoint and return
`{"interrupted_at_step": s, "signal": number}` (train.py then exits with 128 + number); a non-finite loss raises
`FloatingPointError` naming the step as metrics.jsonl counts it, after which the last good checkpoint is still on
disk. Validation runs every `eval_every` steps on a fixed set of episodes of the validation classes; the best
checkpoint by validation accuracy is kept. At the end the best checkpoint (the latest when there is no validation)
is evaluated on `test_episodes` episodes of the test classes.
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from fewjax.data.pipeline import prefetch
from fewjax.data.task_sampling import adaptive_sampling
from fewjax.eval.evaluate import TEST_SEED, VAL_SEED, evaluate
from fewjax.experiment.config import base_config, validate
from fewjax.experiment.data import episodes_to_score, make_sampler
from fewjax.experiment.records import config_defaults, config_key, describe, flatten, write_json
from fewjax.experiment.state import TrainState, init_state, outer_optimizer
from fewjax.methods import build_method, resolve_platform
from fewjax.placement import (batch_sharding, make_mesh, process_task_indices, replicated, shard_local_tasks,
                              state_shardings)
from fewjax.experiment.checkpoint import Checkpoints
from fewjax.train.lock import hold_workdir
from fewjax.train.metrics import MetricWriter
from fewjax.train.progress import FinishedSteps
from fewjax.train.step import make_train_step

logger = logging.getLogger(__name__)

TEST_PROGRESS = "test_progress.npz"
"""The final test's per-episode scores so far, in the workdir (`fewjax.evaluate`'s resume_file)."""

RUNTIME_KEYS = {"total_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "val_episodes",
                "test_episodes", "test_queries", "eval_batch_size", "eval_memory_mb", "data_dir", "steps_per_call",
                "fsdp", "early_stop_patience", "within_alphabet", "transductive", "task_loop", "model.conv_grad",
                "published", "test_resume_file", "eval_inner_batch_size"}
"""Keys a resumed run may change (schedule, evaluation, placement, and how the backend computes the same values);
any other difference means the workdir belongs to another experiment. `total_steps` is one of them unless the
learning rate decays over it (`optim.schedule` cosine or linear): there a longer run is another schedule."""


def train_and_evaluate(config, workdir: str | os.PathLike, *, progress: bool = True) -> dict:
    """Trains (or resumes) in `workdir` and returns the test evaluation of the best checkpoint.

    Returns `{"interrupted_at_step": step, "signal": number}` instead when SIGTERM or SIGINT stopped it (after
    saving a checkpoint of that step). Raises `fewjax.train.lock.WorkdirBusyError` if another run holds `workdir`.
    """
    validate(config)
    config = resolve_platform(config)  # recorded in every checkpoint's config
    workdir = make_workdir(workdir)
    with hold_workdir(workdir):
        return _train_and_evaluate(config, workdir, progress=progress)


def make_workdir(workdir: str | os.PathLike) -> Path:
    """Creates `workdir` (and its parents); an existing file there is a clear error naming --workdir."""
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise NotADirectoryError(f"--workdir {workdir} is an existing file, not a directory: pass a new or existing "
                                 "directory for the run's checkpoints and metrics.")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


class _Run(NamedTuple):
    """What the loop steps: the method, the (restored) state, the jitted step and its input, the validation."""
    method: Any
    state: Any
    step_fn: Callable
    next_input: Callable  # () -> the step's data: the sampler's device state, or the next host meta-batch
    validate: Callable  # params -> {metric, "ci95", ...} on the fixed validation episodes
    mesh: Any
    metric: str
    resumed_metrics: dict | None


def _build(config, ckpts: Checkpoints) -> _Run:
    mesh = make_mesh(fsdp=config.fsdp)
    if config.meta_batch_size % mesh.size:
        raise ValueError(f"config.meta_batch_size={config.meta_batch_size} must be divisible by the {mesh.size} "
                         f"devices (the task axis is split over them); choose a multiple of {mesh.size}.")
    method = build_method(config)
    tx = outer_optimizer(config)
    train_sampler = make_sampler(config, "train", seed=config.seed)
    val_sampler = make_sampler(config, "val", seed=VAL_SEED)
    params = method.init(jax.random.key(config.seed), train_sampler.sample(0).support.x)
    on_device = train_sampler.fits_on_device
    task_sampling = adaptive_task_sampling(config, on_device=on_device)
    state = init_state(params, tx, ema=config.ema_decay > 0,
                       task_classes=train_sampler.source.num_classes if task_sampling is not None else None)
    placement = state_shardings(state, mesh)
    state = jax.device_put(state, placement)
    resumed_metrics = None
    if ckpts.latest_step() is not None:
        state, info = ckpts.restore(state)
        resumed_metrics = info["metrics"]
        logger.info("resumed from step %d in %s", info["step"], ckpts.directory)

    step_fn = jax.jit(make_train_step(method, tx, meta_batch_size=config.meta_batch_size,
                                      sampler=train_sampler if on_device else None,
                                      steps_per_call=config.steps_per_call, ema_decay=config.ema_decay,
                                      task_sharding=batch_sharding(mesh) if mesh.size > 1 else None,
                                      task_sampling=task_sampling, task_loop=config.task_loop),
                      donate_argnums=0, out_shardings=(placement, replicated(mesh)))
    if on_device:
        data = train_sampler.device_state(replicated(mesh))
        next_input = lambda: data  # noqa: E731
    else:
        next_input = functools.partial(next, _host_batches(train_sampler, config, int(state.step), mesh))
    metric = "loss" if config.dataset == "sinusoid" else "accuracy"
    validate_now = functools.partial(evaluate, method.evaluate, sampler=val_sampler, num_episodes=config.val_episodes,
                                     batch_size=config.eval_batch_size, memory_mb=config.eval_memory_mb, seed=VAL_SEED,
                                     metric=metric,
                                     mesh=mesh if mesh.size > 1 else None)
    return _Run(method, state, step_fn, next_input, validate_now, mesh, metric, resumed_metrics)


def adaptive_task_sampling(config, *, on_device: bool):
    """`config.task_sampling`: None for "uniform"; for "adaptive", the estimator of `fewjax.data.task_sampling` with
    the config's `task_sampling_decay`, `_temperature` and `_floor`. Adaptive sampling reads the previous step's
    losses before each draw, so it needs the on-device sampler (the host samples ahead of the step)."""
    if config.task_sampling == "uniform":
        return None
    if not on_device:
        raise ValueError(f"config.task_sampling='adaptive': the {config.dataset} training split is too large to "
                         "sample on the device (fewjax.data.episodes.DEVICE_BYTES_LIMIT), and adaptive sampling draws "
                         "each step's classes there from the previous step's losses. Use task_sampling=uniform, or "
                         "a smaller split (image_size, fewer classes).")
    return adaptive_sampling(decay=config.task_sampling_decay, temperature=config.task_sampling_temperature,
                             floor=config.task_sampling_floor)


def _train_and_evaluate(config, workdir: Path, *, progress: bool) -> dict:
    ckpts = Checkpoints(workdir / "checkpoints", keep_last=config.keep_checkpoints, keep_best=True)
    check_resumable(ckpts, config)
    run = _build(config, ckpts)
    state, metric = run.state, run.metric
    writer = MetricWriter(workdir, resume_step=int(state.step))
    stop = _StopFlag()
    step = int(state.step)
    val_key = f"val_{metric}"
    early = _EarlyStop(config.early_stop_patience * config.eval_every, run.resumed_metrics, step)
    try:
        with stop, tqdm(total=config.total_steps, initial=step, desc="train", unit="step",
                        disable=not progress or jax.process_index() != 0) as bar:
            finished = FinishedSteps(bar)
            while step < config.total_steps and not early.stopped(step):
                state, metrics = run.step_fn(state, run.next_input())
                step += config.steps_per_call
                finished.dispatched(config.steps_per_call, jax.tree.leaves(metrics)[0])
                last = step >= config.total_steps
                if step % config.log_every == 0 or last or stop.requested:
                    finished.drain()
                    logged = _check_finite(state, jax.device_get(metrics), ckpts)
                    writer.write(step, logged, prefix="train")
                    bar.set_postfix({k: f"{logged[k]:.4f}" for k in ("loss", "accuracy") if k in logged})
                val = None
                if step % config.eval_every == 0 or last:
                    finished.drain()
                    val = {val_key: run.validate(state.params)[metric]}
                    if state.ema_params is not None:
                        val[f"val_ema_{metric}"] = run.validate(state.ema_params)[metric]
                    writer.write(step, val, prefix="val")
                    early.update(step, _rank(val, val_key, metric)["val_accuracy"])
                if early.stopped(step):
                    bar.write(f"early stop at step {step}: no new best {val_key} in {config.early_stop_patience} "
                              f"validations since step {early.best_step}", file=sys.stderr)
                if step % config.checkpoint_every == 0 or val is not None or last or stop.requested:
                    _check_finite(state, {}, ckpts)
                    ckpts.save(step, state, config=config.to_dict(),
                               metrics={**(_rank(val, val_key, metric) or {}), **early.metrics()}, force=True)
                if stop.requested:
                    ckpts.wait()
                    bar.write(f"{stop.name} received: checkpoint of step {step} saved in {ckpts.directory}; "
                              "run the same command again to resume.", file=sys.stderr)
                    return {"interrupted_at_step": step, "signal": stop.signum}
        if ckpts.latest_step() is None:  # total_steps=0: keep the untrained (e.g. pretrained) model
            ckpts.save(step, state, config=config.to_dict())
        ckpts.wait()
        return final_test(config, workdir, ckpts, state, run.method, run.mesh, metric,
                          progress=progress)
    finally:
        writer.close()
        ckpts.close()


def final_test(config, workdir, ckpts, state, method, mesh, metric, *, progress) -> dict:
    """Evaluates the best (else latest) checkpoint on the test classes and writes `workdir/eval_test.json`. A test
    cut short (a signal, the end of a session) continues where it stopped when the same command runs again: the
    episodes scored so far are kept in `config.test_resume_file` (by default `workdir/test_progress.npz`)."""
    which = "best" if ckpts.best_step() is not None else "latest"
    state, info = ckpts.restore(state, step=which)  # the loop always leaves at least one checkpoint
    scoring = episodes_to_score(method, state.params, config, "test", seed=TEST_SEED)
    result = evaluate(scoring.eval_fn, state.params, scoring.sampler, num_episodes=config.test_episodes,
                      batch_size=config.eval_batch_size, memory_mb=config.eval_memory_mb, seed=TEST_SEED,
                      metric=metric, mesh=mesh if mesh.size > 1 else None, progress=progress,
                      resume_file=config.test_resume_file or workdir / TEST_PROGRESS, resume_key=config_key(config),
                      resume_defaults=config_defaults())
    record = describe(config, split="test", checkpoint=which, step=info["step"], result=result,
                      features_seconds=scoring.features_seconds)
    write_json(workdir / "eval_test.json", record)
    return record


def check_resumable(ckpts: Checkpoints, config) -> None:
    """Refuses a workdir whose checkpoints were written by another experiment."""
    if ckpts.latest_step() is None:
        return
    saved = {**flatten(base_config().to_dict()), **flatten(ckpts.read_config())}  # keys added since: defaults
    current = flatten(config.to_dict())
    runtime = RUNTIME_KEYS - ({"total_steps"} if config.optim.schedule in ("cosine", "linear") else set())
    differ = sorted(k for k in set(saved) | set(current)
                    if k not in runtime and k.split(".")[0] not in runtime and saved.get(k) != current.get(k))
    if differ:
        shown = ", ".join(f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in differ[:5])
        raise ValueError(f"{ckpts.directory} holds checkpoints of another configuration ({shown}). "
                         "Use a new --workdir, or the configuration those checkpoints were trained with.")


def _check_finite(state: TrainState, metrics: dict, ckpts: Checkpoints) -> dict:
    """The logged metrics as floats; raises if a step since the last check had a non-finite loss."""
    bad = int(state.nonfinite_step)
    if bad >= 0:
        ckpts.wait()  # a save in flight is of an earlier, finite step
        raise FloatingPointError(nonfinite_message(bad + 1, ckpts.latest_step()))
    return {k: float(np.mean(v)) for k, v in metrics.items()}


def nonfinite_message(step: int, kept: int | None) -> str:
    """Step `step` (counted as in metrics.jsonl: the first update is step 1) had a non-finite loss."""
    where = (f"the checkpoint of step {kept} is kept" if kept is not None else
             "no checkpoint was saved before it, so a new run starts from scratch")
    return (f"non-finite loss at step {step}: training stopped; parameters were not updated from that step on and "
            f"{where}. Lower optim.lr or inner_lr, or set optim.grad_clip.")


def _rank(val, key, metric):
    if val is None:
        return None
    # Checkpoints keeps the highest val_accuracy; for a loss, lower is better.
    return {"val_accuracy": val[key] if metric == "accuracy" else -val[key]}


def _host_batches(sampler, config, start_step, mesh):
    """This process's slice of each meta-batch, sampled on a background thread and placed as the global array."""
    mine = process_task_indices(mesh, config.meta_batch_size)

    def gen():
        step = start_step
        while True:
            if config.steps_per_call == 1:
                tasks = sampler.sample_batch(step, mine)
            else:
                tasks = jax.tree.map(lambda *xs: np.stack(xs), *[
                    sampler.sample_batch(step + i, mine) for i in range(config.steps_per_call)])
            step += config.steps_per_call
            yield tasks

    axis = 0 if config.steps_per_call == 1 else 1
    return prefetch(gen(), size=2, put=lambda t: shard_local_tasks(t, mesh, meta_batch_size=config.meta_batch_size,
                                                                  axis=axis))


class _EarlyStop:
    """Stops training `window` steps after the best validation; its state travels in every checkpoint's metrics."""

    def __init__(self, window: int, saved_metrics: dict | None, step: int):
        self.window = window
        saved = saved_metrics or {}
        self.best_step = int(saved.get("best_val_step", step))
        self.best_value = float(saved.get("best_val", -np.inf))

    def metrics(self) -> dict:
        return {"best_val_step": self.best_step, "best_val": self.best_value} if self.best_value > -np.inf else {}

    def update(self, step: int, value: float) -> None:
        if value > self.best_value:
            self.best_step, self.best_value = step, value

    def stopped(self, step: int) -> bool:
        return self.window > 0 and step - self.best_step >= self.window


class _StopFlag:
    """Turns SIGTERM / SIGINT into a request the loop honours at the next step boundary."""

    def __init__(self):
        self.requested, self.name, self.signum, self._old = False, "", 0, {}

    def _handle(self, signum, frame):
        self.requested, self.name, self.signum = True, signal.Signals(signum).name, int(signum)

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
