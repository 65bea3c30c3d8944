"""Orbax checkpoints for the training loop: asynchronous, bounded, verified, and safe to resume from.

`Checkpoints` is a thin layer over `orbax.checkpoint.CheckpointManager`, which saves (asynchronously), keeps the last
`keep_last` steps plus the best by `metrics[best_metric]` (deleting old steps only after the newer save is committed)
and synchronises processes. It adds: `restore("latest")` falling back past a partial or corrupt newest step with a
warning (nothing is deleted; the next `save` moves a corrupt step aside as `<step>.corrupt-<unix time>`); integrity
records (format 2, see `fewjax.experiment.integrity`): the config, a 64-bit fingerprint per array and digests in each
step's custom metadata, a step that no longer matches them or holds NaN/inf counting as corrupt (format 1: NaN/inf
only), and `save` refusing non-finite state; one clear error for a checkpoint of another model (`ValueError` naming
a key), an unwritable directory (`PermissionError`) or a full disk (`OSError(ENOSPC)` naming the step), Orbax's own
error reports with tracebacks being dropped while a `Checkpoints` is open.

Layout: `DIR/<step>/{state/, metrics/, _CHECKPOINT_METADATA}`. Typed and raw uint32 PRNG keys round-trip bit for bit.
Call every method on every process. `close()` (or `with`) finishes the save in flight; without it, the save is
finished when the object is collected, which must happen before the interpreter shuts its thread pools down.

Example::

    with Checkpoints(tempfile.mkdtemp(), keep_last=2) as ckpts:
        for step, acc in ((100, 0.5), (200, 0.9), (300, 0.7), (400, 0.6)):
            ckpts.save(step, state, config={"lr": 1e-3}, metrics={"val_accuracy": acc})   # returns at once
        ckpts.wait()
        print(ckpts.all_steps(), ckpts.best_step())   # [200, 300, 400] 200  (last 2 plus the best)
        state, info = ckpts.restore(state)            # latest; info: step, config, metrics, path
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import numbers
import os
import time
import uuid
import warnings
import weakref
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from fewjax.experiment.integrity import Unreadable, check_compatible, digest, fingerprints, json_dict, verify

__all__ = ["Checkpoints", "CorruptCheckpointError"]

logger = logging.getLogger(__name__)

_MARKER = "fewjax_checkpoint"  # key of our custom metadata; its absence marks a step as unreadable
_FORMAT = 2  # 1: no integrity record; 2: array fingerprints and config/metrics digests
_ITEM = "state"
_DISK_FULL = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded"}
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


class CorruptCheckpointError(RuntimeError):
    """A checkpoint that exists on disk but cannot be read (partial, truncated or missing files)."""


class Checkpoints:
    """A directory of training checkpoints: `save` asynchronously, `restore` the latest, best or a given step.

    Args:
      directory: the checkpoint root (e.g. `<workdir>/checkpoints`); created if missing. Local paths.
      keep_last: how many of the newest checkpoints to keep (>= 1); keep_best: also keep the best one.
      best_metric, best_mode: the metrics key ranking checkpoints, "max" or "min"; steps without it never rank.
      async_save: `save` returns once the arrays are copied off the device (they may then be donated).
      read_only: open an existing directory only to read (evaluation); `save` is then refused.
    """

    def __init__(self, directory: str | os.PathLike, *, keep_last: int = 3, keep_best: bool = True,
                 best_metric: str = "val_accuracy", best_mode: str = "max", async_save: bool = True,
                 read_only: bool = False):
        if isinstance(keep_last, bool) or not isinstance(keep_last, numbers.Integral) or keep_last < 1:
            raise ValueError(f"keep_last must be an integer >= 1, got {keep_last!r}")
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if not isinstance(best_metric, str) or not best_metric:
            raise ValueError(f"best_metric must be a non-empty metrics key, got {best_metric!r}")
        self._dir, self._keep_last, self._keep_best = Path(directory).expanduser().absolute(), keep_last, keep_best
        self._best_metric, self._best_mode, self._async, self._read_only = best_metric, best_mode, async_save, read_only
        if read_only and not self._dir.is_dir():
            raise FileNotFoundError(f"checkpoint directory {self._dir} does not exist (or is not a directory); "
                                    "pass the --workdir of a training run that saved checkpoints")
        if not read_only:
            _ensure_writable(self._dir)
        rank = functools.partial(_rank, best_metric, best_mode)  # not a bound method: no reference to `self`
        keep = [ocp.checkpoint_managers.LatestN(n=int(keep_last))]
        if keep_best:
            keep.append(ocp.checkpoint_managers.BestN(get_metric_fn=rank, reverse=best_mode == "min", n=1,
                                                      keep_checkpoints_without_metrics=False))
        registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
        handler = ocp.handlers.StandardCheckpointHandler()
        registry.add(_ITEM, ocp.args.StandardSave, handler)
        registry.add(_ITEM, ocp.args.StandardRestore, handler)
        options = ocp.CheckpointManagerOptions(
            best_fn=rank, best_mode=best_mode,  # with a best_fn, the manager saves each step's metrics
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(keep),
            enable_async_checkpointing=bool(async_save), read_only=bool(read_only), create=not read_only,
            save_interval_steps=0 if read_only else 1,
            cleanup_tmp_directories=False)  # never delete anything implicitly; partial steps are reported instead
        self._mgr = ocp.CheckpointManager(self._dir, options=options, handler_registry=registry)
        self._pending: int | None = None  # step of the save in flight
        self._corrupt: set[int] = set()  # steps found unreadable, moved aside by the next save
        self._warned: set[str] = set()
        self._closed = False
        _QUIET[0] += 1
        self._release = weakref.finalize(self, _release, self._mgr, self._dir)  # by close(), or on collection

    @property
    def directory(self) -> Path:
        return self._dir

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending (a save in flight is listed once it is complete)."""
        # From disk, not `manager.all_steps()`: the manager lists a step when its save starts and drops the steps it
        # will delete then, although they stay on disk (and restorable) until that save is committed.
        return sorted(ocp.path.step.checkpoint_steps(self._dir))

    def latest_step(self) -> int | None:
        """The newest complete checkpoint (not validated: `restore('latest')` may fall back past a corrupt one)."""
        return max(self.all_steps(), default=None)

    def best_step(self) -> int | None:
        """The complete checkpoint with the best finite `metrics[best_metric]` (the latest among ties), or None."""
        sign = 1 if self._best_mode == "max" else -1
        ranks = [(sign * _rank(self._best_metric, self._best_mode, self._metrics(s)), s) for s in self.all_steps()]
        return max(((r, s) for r, s in ranks if math.isfinite(r)), default=(None, None))[1]

    def save(self, step: int, state: Any, *, config: dict | None = None, metrics: dict | None = None,
             force: bool = False) -> None:
        """Starts saving `state` (a pytree of arrays) as checkpoint `step` with `config` (a JSON-able dict) and
        `metrics` (numbers, ranking checkpoints). The previous save is finished first and its failure (e.g. disk
        full) raised here. Saving a complete step again is a no-op; an older step needs `force=True`."""
        self._check_open()
        if self._read_only:
            raise PermissionError(f"Checkpoints({str(self._dir)!r}) was opened with read_only=True; cannot save")
        step, config, metrics = _as_step(step), json_dict(config, "config") or {}, json_dict(metrics, "metrics")
        self._finish_pending()
        self._set_aside_corrupt()
        steps = self.all_steps()
        if step in steps:
            logger.info("checkpoint step %d already exists in %s; not saving it again", step, self._dir)
            return
        if steps and step < steps[-1] and not force:
            raise ValueError(f"cannot save step {step}: {self._dir} already holds a newer checkpoint (step "
                             f"{steps[-1]}), probably from another run; use a new --workdir, or pass force=True")
        integrity = {"arrays": fingerprints(state, refuse_nonfinite=True), "config": digest(config),
                     "metrics": digest(metrics or None)}
        if self._mgr.all_steps() != steps:  # after a failed save, or steps written by another process
            self._mgr.reload()
        try:
            self._mgr.save(step, args=ocp.args.Composite(**{_ITEM: ocp.args.StandardSave(state)}), force=True,
                           metrics=metrics or {},  # {}, not None: BestN then ranks it last instead of "missing"
                           custom_metadata={_MARKER: _FORMAT, "config": config, "integrity": integrity})
        except Exception as e:  # noqa: BLE001 - translated and re-raised
            raise self._save_error(step, e) from e
        self._pending = step
        if not self._async:
            self._finish_pending()

    def wait(self) -> None:
        """Blocks until the save in flight (if any) is complete; raises its error if it failed."""
        self._check_open()
        self._finish_pending()

    def restore(self, target: Any, *, step: int | str = "latest") -> tuple[Any, dict]:
        """Restores checkpoint `step` (an int, "latest": the newest readable, or "best") into the structure, shapes,
        dtypes and shardings of `target` (arrays, possibly donated, or `jax.ShapeDtypeStruct`s); returns `(state,
        {"step", "config", "metrics" (or None), "path"})`. Raises FileNotFoundError (no readable checkpoint, no such
        step), ValueError (another model's checkpoint) or CorruptCheckpointError (a given step cannot be read)."""
        self._check_open()
        self._finish_pending()
        abstract = jax.tree.map(_abstract_leaf, target)
        return self._read(step, lambda s: self._restore_step(s, abstract), "restore")

    def read_config(self, step: int | str = "latest") -> dict:
        """The config saved with checkpoint `step` (int, "latest" or "best"), without restoring any array."""
        self._check_open()
        self._finish_pending()
        return self._read(step, self._read_custom, "read the config of")["config"]

    def close(self) -> None:
        """Finishes the save in flight and releases Orbax's threads. Idempotent."""
        if not self._closed:
            try:
                self._finish_pending()
            finally:
                self._closed = True
                self._release()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - do not mask the exception already propagating
            if exc is None:
                raise
            logger.exception("while closing checkpoints in %s after an error", self._dir)

    def __repr__(self) -> str:
        return (f"Checkpoints({str(self._dir)!r}, keep_last={self._keep_last}, keep_best={self._keep_best}, "
                f"best_metric={self._best_metric!r}, best_mode={self._best_mode!r}, async_save={self._async})")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Checkpoints({str(self._dir)!r}) is closed")

    def _metrics(self, step: int) -> dict | None:
        try:
            return self._mgr.metrics(step) or None  # a step saved without metrics holds {}
        except (OSError, ValueError):  # unreadable: no rank, and `verify` finds that it differs from its digest
            return None

    def _read(self, step: int | str, read, what: str):
        """`read(s)` of the requested step; for "latest", of the newest step it does not find `Unreadable`."""
        if step == "best":
            if (s := self.best_step()) is None:
                raise FileNotFoundError(f"no checkpoint in {self._dir} has the metric {self._best_metric!r}; "
                                        "use step='latest' or an int step")
        elif step != "latest":
            if isinstance(step, str):
                raise ValueError(f"step must be an int, 'latest' or 'best', got {step!r}")
            if (s := _as_step(step)) not in (steps := self.all_steps()):
                raise FileNotFoundError(f"no checkpoint for step {s} in {self._dir}; complete steps: {steps}")
        if step != "latest":
            try:
                return read(s)
            except Unreadable as e:
                self._corrupt.add(s)
                raise CorruptCheckpointError(f"checkpoint {self._dir / str(s)} is partial or corrupt ({e}); cannot "
                                             f"{what} it: use another step (complete steps: {self.all_steps()}) or "
                                             "step='latest'") from None
        for name in sorted(ocp.path.step.tmp_checkpoints(self._dir)):
            self._warn(f"ignoring the partial checkpoint {self._dir / name} (left by an interrupted save); it is "
                       "not deleted, remove it by hand to reclaim space")
        if not (steps := self.all_steps()):
            raise FileNotFoundError(f"no checkpoint in {self._dir}; train first, or pass the --workdir of a run "
                                    "that saved checkpoints")
        for s in reversed(steps):
            try:
                return read(s)
            except Unreadable as e:
                self._corrupt.add(s)
                self._warn(f"skipping checkpoint {self._dir / str(s)}: it is partial or corrupt ({e}); falling "
                           "back to the previous checkpoint. It is not deleted (the next save moves it aside).")
        raise FileNotFoundError(f"could not {what} any checkpoint in {self._dir}: all of steps {steps} are partial "
                                "or corrupt (see the warnings above); they were left in place")

    def _read_custom(self, step: int) -> dict:
        try:
            custom = self._mgr.metadata(step).custom_metadata
        except Exception as e:  # noqa: BLE001 - any read failure means the step is unusable
            raise Unreadable(f"metadata unreadable: {_short(e)}") from None
        if not isinstance(custom, dict) or custom.get(_MARKER) is None:
            raise Unreadable("its _CHECKPOINT_METADATA (with the config) is missing")
        config, integrity = dict(custom.get("config") or {}), custom.get("integrity")
        if custom[_MARKER] == 1:  # format 1 predates the integrity record
            return {"config": config, "integrity": None}
        if not isinstance(integrity, dict) or not isinstance(integrity.get("arrays"), dict):
            raise Unreadable("its integrity record (checksums) is missing")
        if integrity.get("config") != digest(config):
            raise Unreadable("its config does not match its checksum")
        return {"config": config, "integrity": integrity}

    def _restore_step(self, step: int, abstract: Any) -> tuple[Any, dict]:
        path, custom = self._dir / str(step), self._read_custom(step)
        try:
            saved = self._mgr.metadata(step).item_metadata[_ITEM]
        except Exception as e:  # noqa: BLE001
            raise Unreadable(f"pytree metadata unreadable: {_short(e)}") from None
        if not jax.tree.leaves(saved := getattr(saved, "tree", saved)):  # Orbax's answer to unreadable metadata
            raise Unreadable("its array metadata is missing or unreadable")
        check_compatible(saved, abstract, path, self._dir)
        target, rebuild = _without_fields_saved_before_they_existed(abstract, saved)
        try:
            state = self._mgr.restore(step, args=ocp.args.Composite(**{_ITEM: ocp.args.StandardRestore(target)}))
        except Exception as e:  # noqa: BLE001
            raise Unreadable(f"{type(e).__name__}: {_short(e)}") from None
        state = rebuild(state[_ITEM])
        verify(state, metrics := self._metrics(step), custom["integrity"])
        return state, {"step": step, "config": custom["config"], "metrics": metrics, "path": str(path)}

    def _finish_pending(self) -> None:
        step, self._pending = self._pending, None
        if step is not None:
            try:
                self._mgr.wait_until_finished()
            except Exception as e:  # noqa: BLE001 - translated and re-raised
                raise self._save_error(step, e) from e

    def _save_error(self, step: int, e: BaseException) -> Exception:
        logger.warning("saving checkpoint step %d in %s failed: %s", step, self._dir, _short(e, 200))
        where = f"checkpoint step {step} in {self._dir}"
        kept = f"the previous checkpoints are intact (complete steps: {self.all_steps()})"
        code = _errno_in(e)
        if code in _DISK_FULL:
            return OSError(code, f"{_DISK_FULL[code]} while saving {where}; {kept}. Free disk space or use a "
                           "--workdir on a larger disk (or lower keep_last), then resume")
        if code in _DENIED:
            return PermissionError(code, f"permission denied while saving {where}; {kept}. Make the directory "
                                   "writable or use another --workdir")
        return RuntimeError(f"saving {where} failed ({type(e).__name__}: {_short(e)}); {kept}")

    def _set_aside_corrupt(self) -> None:
        """Renames the corrupt steps `<step>.corrupt-<time>` (Orbax only deletes steps): process 0, then a barrier."""
        if not self._corrupt:
            return
        corrupt, self._corrupt, stamp = sorted(self._corrupt), set(), int(time.time())
        for path in (self._dir / str(step) for step in corrupt):
            aside = path.with_name(f"{path.name}.corrupt-{stamp}")
            if jax.process_index() == 0 and path.is_dir():
                os.replace(path, aside)
            self._warn(f"moved the corrupt checkpoint {path} aside to {aside} (not deleted)")
        ocp.multihost.sync_global_processes(f"fewjax_checkpoint_set_aside_{stamp}")
        self._mgr.reload()

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)
            warnings.warn(message, RuntimeWarning, stacklevel=4)


_QUIET = [0]  # how many `Checkpoints` are open


def _quiet_orbax(record: logging.LogRecord) -> bool:
    """Drops Orbax's error reports with a traceback (one per background thread, over a thousand lines for a full
    disk) while a `Checkpoints` is open: they reach it as exceptions, raised once, translated."""
    return not (_QUIET[0] and record.levelno >= logging.ERROR and record.exc_info
                and f"{os.sep}orbax{os.sep}" in record.pathname)


logging.getLogger("absl").addFilter(_quiet_orbax)  # Orbax logs through absl


def _release(manager: ocp.CheckpointManager, directory: Path) -> None:
    """Finishes the save in flight and closes `manager`."""
    try:
        manager.close()
    except Exception:  # noqa: BLE001 - from close(), `_finish_pending` has raised this error already
        logger.exception("could not finish the checkpoint save in flight in %s", directory)
    finally:
        _QUIET[0] -= 1


def _rank(key: str, mode: str, metrics: Any) -> float:
    """`metrics[key]`; -inf/+inf (the worst in `mode`) when it is missing or not finite."""
    try:
        value = float(metrics[key])
    except (KeyError, TypeError, ValueError):
        value = math.nan
    return value if math.isfinite(value) else -math.inf if mode == "max" else math.inf


def _ensure_writable(directory: Path) -> None:
    fix = ("training saves checkpoints there: choose a writable --workdir or fix its permissions "
           f"(e.g. chmod u+w {directory}); to only read checkpoints pass read_only=True")
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"checkpoint directory {directory} exists and is not a directory; {fix}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".fewjax-write-probe-{uuid.uuid4().hex}"  # unlike os.access, sees read-only mounts
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise OSError(e.errno, f"{_DISK_FULL[e.errno]} in checkpoint directory {directory}") from e
        raise PermissionError(e.errno or errno.EACCES,
                              f"checkpoint directory {directory} is not writable ({e.strerror}); {fix}") from e


def _as_step(step: Any) -> int:
    ok = isinstance(step, (numbers.Integral, np.integer)) and not isinstance(step, (bool, np.bool_))
    if isinstance(step, jax.Array):
        ok = step.shape == () and np.issubdtype(step.dtype, np.integer)
    if not ok or int(step) < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    return int(step)


def _abstract_leaf(x: Any) -> Any:
    if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is None and jax.process_count() == 1:
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    if isinstance(x, jax.Array):  # shape, dtype and sharding only: the buffer may have been donated
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x


def _without_fields_saved_before_they_existed(abstract: Any, saved: Any):
    """A NamedTuple state may have gained a field that is None when unused (e.g. `TrainState.sampling`); checkpoints
    written before it existed lack it. Returns the target to restore (without such fields) and a function that
    puts them back as None."""
    fields = getattr(abstract, "_fields", None)
    absent = [f for f in fields or () if isinstance(saved, dict) and f not in saved and getattr(abstract, f) is None]
    if not absent:
        return abstract, lambda state: state
    kept = {f: getattr(abstract, f) for f in fields if f not in absent}
    return kept, lambda state: type(abstract)(**state, **dict.fromkeys(absent))


def _errno_in(e: BaseException | None, depth: int = 20) -> int | None:
    """The errno of the first `OSError` in the chain of `e`'s causes and contexts."""
    while e is not None and depth and not (isinstance(e, OSError) and e.errno):
        e, depth = e.__cause__ or e.__context__, depth - 1
    return e.errno if isinstance(e, OSError) else None


def _short(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."
