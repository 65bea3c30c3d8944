"""Orbax checkpoints for the training loop: asynchronous, bounded, and safe to resume from.

`Checkpoints` wraps the Orbax v1 training `Checkpointer` (orbax-checkpoint 0.12.8 ships it as
`orbax.checkpoint.experimental.v1`; newer releases as `orbax.checkpoint.v1`, both are accepted). It adds what a
training run needs and Orbax leaves to the caller:

* a preservation policy (Orbax's default keeps every checkpoint): the last `keep_last` checkpoints plus the best by
  `metrics[best_metric]`. Orbax deletes old steps only after the newer save has been committed, so nothing is lost
  when a save fails or the process is killed;
* the run's config (a JSON-able dict) stored in each step's Orbax metadata, readable without a target;
* `restore(step="latest")` that skips a partial (a leftover `<step>.orbax-checkpoint-tmp` directory) or
  corrupt latest checkpoint with a warning naming its path, and falls back to the previous one; nothing is deleted.
  A corrupt step directory is moved aside (renamed `<step>.corrupt-<unix time>`) by the next `save`, so that the
  resumed run can save that step again and retention never counts it;
* integrity: each step carries a fingerprint of every array (64 bits, computed on the device from the arrays being
  saved, before they reach the disk) and digests of its config and metrics, in its Orbax metadata. `restore` recomputes
  them from what it read; a step whose data changed after the save (a flipped bit, a damaged copy) or that holds
  non-finite values counts as corrupt: skipped with a warning like a partial one. `save` refuses non-finite values.
  Steps written before the fingerprints (format 1) are checked for non-finite values only;
* one clear error for a target of another model (`ValueError` naming a mismatching key), a read-only directory
  (`PermissionError` at construction), and a full disk (`OSError(errno.ENOSPC)` naming the step and directory).
  While a `Checkpoints` is open, Orbax's own error reports with tracebacks (one per background thread, over a
  thousand lines for a full disk) are dropped: the failure is raised once, translated, after one warning line.

Layout on disk: `DIR/<step>/` (plain integer step names), each holding `state/` (the pytree, OCDBT/zarr3),
`metrics/` (JSON, when metrics were given) and `_CHECKPOINT_METADATA` (commit time and our custom metadata: the
config). A save in flight writes into `DIR/<step>.orbax-checkpoint-tmp/` (orbax 0.12.8; older releases append
`-<timestamp>`) and is renamed to `DIR/<step>` when complete, so a step directory exists only for complete saves.
Orbax itself removes a stale tmp directory of the same step when that step is saved again.

PRNG keys: typed keys (`jax.random.key`) and raw `uint32` keys (`jax.random.PRNGKey`) both round-trip bit for bit.
Orbax stores a typed key as its `key_data` together with the key implementation and restores a typed key when the
target leaf is one (a key array or a `jax.ShapeDtypeStruct` with a key dtype); no conversion by the loop is needed.

Multi-host: every method must be called on all processes (Orbax synchronises them). Fingerprints are reductions of
the global arrays, the same on every process and for any sharding, so a step saved by N processes verifies in M. All
writes go through Orbax, except moving a corrupt step aside, which only process 0 does (an atomic rename) before a
barrier.

Example::

    import tempfile
    import jax, jax.numpy as jnp, optax
    from fewjax.train.checkpoint import Checkpoints

    params = {"w": jnp.ones((3, 2))}
    tx = optax.adam(1e-3)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0), "rng": jax.random.key(0)}
    with Checkpoints(tempfile.mkdtemp(), keep_last=2) as ckpts:
        for step, acc in ((100, 0.5), (200, 0.9), (300, 0.7), (400, 0.6)):
            ckpts.save(step, state, config={"lr": 1e-3}, metrics={"val_accuracy": acc})   # returns at once
        ckpts.wait()                                   # block until the last save is complete
        print(ckpts.all_steps(), ckpts.best_step())   # [200, 300, 400] 200  (last 2 plus the best)
        state, info = ckpts.restore(state)            # latest; the target gives structure, dtypes, shardings
        print(info["step"], info["config"], info["metrics"])   # 400 {'lr': 0.001} {'val_accuracy': 0.6}
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import logging
import math
import numbers
import os
import re
import socket
import threading
import time
import uuid
import warnings
import weakref
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:  # orbax-checkpoint >= 0.13 (assumed to promote v1 out of experimental)
    from orbax.checkpoint import v1 as ocp  # type: ignore[attr-defined]
except ImportError:  # orbax-checkpoint 0.12.x
    from orbax.checkpoint.experimental import v1 as ocp

__all__ = ["Checkpoints", "CorruptCheckpointError"]

logger = logging.getLogger(__name__)

_MARKER = "fewjax_checkpoint"  # key of our custom metadata; its absence marks a step as unreadable
_FORMAT = 2  # 1: no integrity record; 2: array fingerprints and config/metrics digests
_TMP_SUFFIX = ".orbax-checkpoint-tmp"
_STEP_NAME = re.compile(r"0|[1-9][0-9]*")  # Orbax's default step directory names


class CorruptCheckpointError(RuntimeError):
    """A checkpoint that exists on disk but cannot be read (partial, truncated or missing files)."""


class _Unreadable(Exception):
    """Internal: a step could not be read; carries the reason."""


class Checkpoints:
    """A directory of training checkpoints: `save` asynchronously, `restore` the latest, best or a given step.

    Args:
      directory: the checkpoint root (e.g. `<workdir>/checkpoints`); created if missing. Local paths.
      keep_last: how many of the newest checkpoints to keep (>= 1).
      keep_best: also keep the checkpoint with the best `metrics[best_metric]`.
      best_metric: the metrics key ranking checkpoints; checkpoints saved without it never count as best.
      best_mode: "max" or "min".
      async_save: if True, `save` returns once the arrays are copied off the device (the caller may then donate or
        overwrite them) and writes in a background thread; otherwise `save` blocks until the checkpoint is complete.
      read_only: open an existing directory only to read (evaluation); `save` is then refused.

    Every method must be called from the main thread of every process.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_last: int = 3,
        keep_best: bool = True,
        best_metric: str = "val_accuracy",
        best_mode: str = "max",
        async_save: bool = True,
        read_only: bool = False,
    ):
        if isinstance(keep_last, bool) or not isinstance(keep_last, numbers.Integral) or keep_last < 1:
            raise ValueError(f"keep_last must be an integer >= 1, got {keep_last!r}")
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if not isinstance(best_metric, str) or not best_metric:
            raise ValueError(f"best_metric must be a non-empty metrics key, got {best_metric!r}")
        self._dir = Path(directory).expanduser().absolute()
        self._keep_last = int(keep_last)
        self._keep_best = bool(keep_best)
        self._best_metric = best_metric
        self._best_mode = best_mode
        self._async = bool(async_save)
        self._read_only = bool(read_only)
        if self._read_only:
            if not self._dir.is_dir():
                raise FileNotFoundError(
                    f"checkpoint directory {self._dir} does not exist (or is not a directory); "
                    "pass the --workdir of a training run that saved checkpoints"
                )
        else:
            _ensure_writable(self._dir)

        policies = ocp.training.preservation_policies
        keep = [policies.LatestN(n=self._keep_last)]
        if self._keep_best:
            keep.append(
                policies.BestN(
                    get_metric_fn=self._rank_value,
                    reverse=self._best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        self._ckptr = ocp.training.Checkpointer(
            self._dir,
            # The loop decides when to save; every call saves (we pass force=True as well).
            save_decision_policy=ocp.training.save_decision_policies.FixedIntervalPolicy(1),
            preservation_policy=policies.AnyPreservationPolicy(keep),
            cleanup_tmp_directories=False,  # never delete anything implicitly; partial dirs are reported instead
        )
        self._pending: int | None = None  # step of the save in flight
        self._corrupt: dict[int, Path] = {}  # steps found unreadable by restore/read_config
        self._warned: set[str] = set()
        self._closed = False
        _QUIET_ORBAX.open()
        _close_at_exit(self)

    # ------------------------------------------------------------------ queries

    @property
    def directory(self) -> Path:
        return self._dir

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending (a save in flight is not listed until it is complete)."""
        # Read from disk, not from Orbax's list: Orbax drops the steps it will garbage-collect from its list when a
        # save *starts*, although they stay on disk (and restorable) until that save is complete.
        if not self._dir.is_dir():
            return []
        return sorted(int(p.name) for p in self._dir.iterdir() if _STEP_NAME.fullmatch(p.name) and p.is_dir())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint (not validated: `restore('latest')` may fall back past a corrupt one)."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        """The complete checkpoint with the best finite `metrics[best_metric]` (the latest among ties), or None."""
        complete = set(self.all_steps())
        scored = [
            (v, c.step)
            for c in self._ckptr.checkpoints
            if c.step in complete and (v := self._metric(c.metrics)) is not None
        ]
        if not scored:
            return None
        if self._best_mode == "max":
            return max(scored)[1]
        return min(scored, key=lambda vs: (vs[0], -vs[1]))[1]

    # ------------------------------------------------------------------ save

    def save(
        self,
        step: int,
        state: Any,
        *,
        config: dict | None = None,
        metrics: dict | None = None,
        force: bool = False,
    ) -> None:
        """Starts saving `state` (any pytree of jax/numpy arrays) as checkpoint `step`.

        With `async_save` this returns as soon as the arrays are copied to host memory; the previous save is
        finished first, and its failure (e.g. disk full) is raised here. Saving a step that already has a complete
        checkpoint is a no-op (e.g. a preemption save right after a periodic one). A step older than the newest
        checkpoint is refused unless `force=True`.

        Args:
          step: the training step (int >= 0).
          state: params, optimizer state, step, RNG keys, sampler position...
          config: a JSON-able dict stored beside the state (see `read_config`).
          metrics: JSON-able dict of numbers (jax/numpy scalars accepted); ranks checkpoints for `keep_best`.
          force: allow saving a step older than the newest checkpoint.
        """
        self._check_open()
        if self._read_only:
            raise PermissionError(f"Checkpoints({str(self._dir)!r}) was opened with read_only=True; cannot save")
        step = _as_step(step)
        config = _json_dict(config, "config")
        metrics = _json_dict(metrics, "metrics")
        self._finish_pending()
        self._set_aside_corrupt()
        steps = self.all_steps()
        if step in steps:
            logger.info("checkpoint step %d already exists in %s; not saving it again", step, self._dir)
            return
        if steps and step < steps[-1] and not force:
            raise ValueError(
                f"cannot save step {step}: {self._dir} already holds a newer checkpoint (step {steps[-1]}), "
                "probably from another run; use a new --workdir, or pass force=True to save it anyway"
            )
        config = config if config is not None else {}
        integrity = {"arrays": _fingerprints(state, refuse_nonfinite=True), "config": _digest(config),
                     "metrics": _digest(metrics or None)}  # Orbax reads {} back as None
        custom = {_MARKER: _FORMAT, "config": config, "integrity": integrity}
        try:
            self._ckptr.save_async(step, state, force=True, metrics=metrics, custom_metadata=custom)
        except Exception as e:  # noqa: BLE001 - translated and re-raised
            self._after_failed_save()
            raise self._save_error(step, e) from e
        self._pending = step
        if not self._async:
            self._finish_pending()

    def wait(self) -> None:
        """Blocks until the save in flight (if any) is complete; raises its error if it failed."""
        self._check_open()
        self._finish_pending()

    # ------------------------------------------------------------------ restore

    def restore(self, target: Any, *, step: int | str = "latest") -> tuple[Any, dict]:
        """Restores a checkpoint into the structure of `target`.

        Args:
          target: a pytree of arrays or `jax.ShapeDtypeStruct` (with shardings for multi-device) of the same
            structure and shapes as the saved state; concrete arrays are used only for their shape, dtype and
            sharding (they may have been donated).
          step: an int, "latest" (newest readable: partial or corrupt newer ones are skipped with a warning naming
            them) or "best".

        Returns:
          `(state, info)`, info = {"step": int, "config": dict, "metrics": dict | None, "path": str}.

        Raises:
          FileNotFoundError: no (readable) checkpoint, or no such step.
          ValueError: the checkpoint is of another model/config (names a mismatching key).
          CorruptCheckpointError: an explicitly requested step or "best" cannot be read.
        """
        self._check_open()
        self._finish_pending()
        self._sync_with_disk()
        abstract = jax.tree.map(_abstract_leaf, target)
        if step == "latest":
            return self._first_readable(lambda s: self._restore_step(s, abstract), what="restore")
        s = self._resolve(step)
        try:
            return self._restore_step(s, abstract)
        except _Unreadable as e:
            self._corrupt[s] = self._step_path(s)
            raise CorruptCheckpointError(
                f"checkpoint {self._step_path(s)} is partial or corrupt ({e}); restore another step "
                f"(complete steps: {self.all_steps()}) or step='latest'"
            ) from None

    def read_config(self, step: int | str = "latest") -> dict:
        """The config saved with checkpoint `step` (int, "latest" or "best"), without restoring any array."""
        self._check_open()
        self._finish_pending()
        self._sync_with_disk()
        if step == "latest":
            return self._first_readable(self._read_custom, what="read the config of")["config"]
        s = self._resolve(step)
        try:
            return self._read_custom(s)["config"]
        except _Unreadable as e:
            raise CorruptCheckpointError(f"cannot read the config of checkpoint {self._step_path(s)} ({e})") from None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Finishes the save in flight and releases Orbax's threads. Idempotent."""
        if self._closed:
            return
        try:
            self._finish_pending()
        finally:
            self._closed = True
            self._ckptr.close()
            _QUIET_ORBAX.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
            return
        try:  # do not mask the exception that is already propagating
            self.close()
        except Exception:  # noqa: BLE001
            logger.exception("while closing checkpoints in %s after an error", self._dir)

    def __repr__(self) -> str:
        return (
            f"Checkpoints({str(self._dir)!r}, keep_last={self._keep_last}, keep_best={self._keep_best}, "
            f"best_metric={self._best_metric!r}, best_mode={self._best_mode!r}, async_save={self._async})"
        )

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Checkpoints({str(self._dir)!r}) is closed")

    def _step_path(self, step: int) -> Path:
        return self._dir / str(step)

    def _metric(self, metrics: Any) -> float | None:
        if not isinstance(metrics, dict):
            return None
        try:
            value = float(metrics[self._best_metric])
        except (KeyError, TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    def _rank_value(self, metrics: Any) -> float:
        value = self._metric(metrics)
        if value is None:  # rank last whatever the mode
            return -math.inf if self._best_mode == "max" else math.inf
        return value

    def _resolve(self, step: int | str) -> int:
        if step == "best":
            best = self.best_step()
            if best is None:
                raise FileNotFoundError(
                    f"no checkpoint in {self._dir} has the metric {self._best_metric!r}; "
                    "use step='latest' or an int step"
                )
            return best
        if isinstance(step, str):
            raise ValueError(f"step must be an int, 'latest' or 'best', got {step!r}")
        s = _as_step(step)
        steps = self.all_steps()
        if s not in steps:
            raise FileNotFoundError(f"no checkpoint for step {s} in {self._dir}; complete steps: {steps}")
        return s

    def _first_readable(self, read, *, what: str):
        self._warn_partial()
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(
                f"no checkpoint in {self._dir}; train first, or pass the --workdir of a run that saved checkpoints"
            )
        for s in reversed(steps):
            try:
                return read(s)
            except _Unreadable as e:
                self._corrupt[s] = self._step_path(s)
                self._warn(
                    f"skipping checkpoint {self._step_path(s)}: it is partial or corrupt ({e}); falling back to "
                    "the previous checkpoint. It is not deleted (the next save moves it aside)."
                )
        raise FileNotFoundError(
            f"could not {what} any checkpoint in {self._dir}: all of steps {steps} are partial or corrupt "
            "(see the warnings above); they were left in place"
        )

    def _read_custom(self, step: int) -> dict:
        try:
            custom = self._ckptr.metadata(step).custom_metadata
        except Exception as e:  # noqa: BLE001 - any read failure means the step is unusable
            raise _Unreadable(f"metadata unreadable: {_short(e)}") from None
        if not isinstance(custom, dict) or custom.get(_MARKER) is None:
            raise _Unreadable("its _CHECKPOINT_METADATA (with the config) is missing")
        config = dict(custom.get("config") or {})
        integrity = custom.get("integrity")
        if custom[_MARKER] != 1:  # format 1 predates the integrity record
            if not isinstance(integrity, dict) or not isinstance(integrity.get("arrays"), dict):
                raise _Unreadable("its integrity record (checksums) is missing")
            if integrity.get("config") != _digest(config):
                raise _Unreadable("its config does not match its checksum")
        return {"config": config, "integrity": integrity}

    def _restore_step(self, step: int, abstract: Any) -> tuple[Any, dict]:
        path = self._step_path(step)
        custom = self._read_custom(step)
        try:
            saved_tree = self._ckptr.metadata(step).metadata
        except Exception as e:  # noqa: BLE001
            raise _Unreadable(f"pytree metadata unreadable: {_short(e)}") from None
        if not jax.tree.leaves(saved_tree):  # Orbax yields an empty tree when it cannot read the array metadata
            raise _Unreadable("its array metadata is missing or unreadable")
        _check_compatible(saved_tree, abstract, path, self._dir)
        try:
            state = self._ckptr.load(step, abstract)
        except Exception as e:  # noqa: BLE001
            raise _Unreadable(f"{type(e).__name__}: {_short(e)}") from None
        metrics = next((c.metrics for c in self._ckptr.checkpoints if c.step == step), None)
        _verify(state, metrics, custom["integrity"])
        return state, {"step": step, "config": custom["config"], "metrics": metrics, "path": str(path)}

    def _sync_with_disk(self) -> None:
        if [c.step for c in self._ckptr.checkpoints] != self.all_steps():  # e.g. written by another process
            self._ckptr.reload()

    def _finish_pending(self) -> None:
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            self._ckptr.wait()
        except Exception as e:  # noqa: BLE001 - translated and re-raised
            self._after_failed_save()
            raise self._save_error(step, e) from e

    def _after_failed_save(self) -> None:
        # Orbax drops the steps it planned to garbage-collect from its in-memory list before the save completes;
        # they are still on disk (deletion only follows a successful commit), so rescan.
        try:
            self._ckptr.reload()
        except Exception:  # noqa: BLE001
            logger.exception("could not rescan %s after a failed save", self._dir)

    def _save_error(self, step: int, e: BaseException) -> Exception:
        logger.warning("saving checkpoint step %d in %s failed: %s", step, self._dir, _short(e, 200))
        where = f"checkpoint step {step} in {self._dir}"
        kept = f"the previous checkpoints are intact (complete steps: {self.all_steps()})"
        code = _errno_in(e)
        if code == errno.ENOSPC:
            return OSError(
                errno.ENOSPC,
                f"No space left on device while saving {where}; {kept}. Free disk space or use a --workdir on a "
                "larger disk (or lower keep_last), then resume",
            )
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            return PermissionError(
                code, f"permission denied while saving {where}; {kept}. Make the directory writable or use "
                "another --workdir"
            )
        return RuntimeError(f"saving {where} failed ({type(e).__name__}: {_short(e)}); {kept}")

    def _set_aside_corrupt(self) -> None:
        if not self._corrupt:
            return
        corrupt, self._corrupt = self._corrupt, {}
        stamp = int(time.time())
        for step, path in sorted(corrupt.items()):
            aside = path.with_name(f"{path.name}.corrupt-{stamp}")
            if jax.process_index() == 0 and path.is_dir():
                os.replace(path, aside)
            self._warn(f"moved the corrupt checkpoint {path} aside to {aside} (not deleted)")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"fewjax_checkpoint_set_aside_{stamp}")
        self._ckptr.reload()

    def _warn_partial(self) -> None:
        if not self._dir.is_dir():
            return
        for p in sorted(self._dir.iterdir()):
            if _TMP_SUFFIX in p.name:
                self._warn(
                    f"ignoring the partial checkpoint {p} (left by an interrupted save); it is not deleted, "
                    "remove it by hand to reclaim space"
                )

    def _warn(self, message: str) -> None:
        if message in self._warned:
            return
        self._warned.add(message)
        logger.warning("%s", message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


# ---------------------------------------------------------------------- helpers


class _QuietOrbaxTracebacks(logging.Filter):
    """Drops Orbax's error reports that carry a traceback while any `Checkpoints` is open (they reach `Checkpoints`
    as exceptions, which it raises once, translated); other records pass."""

    _ORBAX = os.sep + "orbax" + os.sep

    def __init__(self):
        super().__init__()
        self._open = 0

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.exc_info and self._ORBAX in record.pathname)

    def open(self) -> None:
        self._open += 1
        logging.getLogger("absl").addFilter(self)  # Orbax logs through absl; adding twice is a no-op

    def close(self) -> None:
        self._open = max(0, self._open - 1)
        if not self._open:
            logging.getLogger("absl").removeFilter(self)


_QUIET_ORBAX = _QuietOrbaxTracebacks()


def _close_at_exit(ckpts: Checkpoints) -> None:
    """Finishes a save still in flight when the interpreter exits without `close()`.

    It must run before `concurrent.futures` shuts its executors down (Orbax's background commit needs them, and
    plain `atexit` handlers run too late), hence `threading._register_atexit` when it exists.
    """
    ref = weakref.ref(ckpts)

    def finish() -> None:
        obj = ref()
        if obj is not None and not obj._closed:
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - nobody is left to catch it at exit
                logger.exception("could not finish the checkpoint save in flight in %s at exit", obj._dir)

    getattr(threading, "_register_atexit", atexit.register)(finish)


def _ensure_writable(directory: Path) -> None:
    fix = (
        "training saves checkpoints there: choose a writable --workdir or fix its permissions "
        f"(e.g. chmod u+w {directory}); to only read checkpoints pass read_only=True"
    )
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"checkpoint directory {directory} exists and is not a directory; {fix}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # A probe per process (unique name) tells more than os.access: it also catches read-only mounts.
        probe = directory / f".fewjax-write-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"No space left on device in checkpoint directory {directory}") from e
        raise PermissionError(
            e.errno or errno.EACCES, f"checkpoint directory {directory} is not writable ({e.strerror}); {fix}"
        ) from e


def _as_step(step: Any) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (numbers.Integral, np.integer, jax.Array)):
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    if isinstance(step, jax.Array):
        if step.shape != () or not np.issubdtype(step.dtype, np.integer):
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
    value = int(step)
    if value < 0:
        raise ValueError(f"step must be an integer >= 0, got {value}")
    return value


def _jsonable(x: Any, where: str) -> Any:
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, (np.ndarray, np.generic, jax.Array)) and np.ndim(x) == 0:
        return np.asarray(x).item()
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} keys must be strings to be saved as JSON, got {k!r}")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(x)]
    raise ValueError(
        f"{where} = {x!r} ({type(x).__name__}) cannot be saved as JSON; use numbers, strings, lists and dicts"
    )


def _json_dict(x: Any, name: str) -> dict | None:
    if x is None:
        return None
    if not isinstance(x, dict) and hasattr(x, "to_dict"):  # ml_collections.ConfigDict
        x = x.to_dict()
    if not isinstance(x, dict):
        raise ValueError(f"{name} must be a dict, got {type(x).__name__}")
    out = _jsonable(x, name)
    json.dumps(out)  # fails here, not in Orbax's background thread
    return out


def _digest(x: Any) -> str:
    """A short digest of a JSON-able value (config, metrics), independent of key order."""
    text = json.dumps(x, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fmix(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: every input bit flips about half the output bits."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(x: jax.Array) -> jax.Array:
    """The bits of `x` as uint32 words (8-byte dtypes gain a trailing axis of 2), without moving any shard."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([x.real, x.imag], axis=-1)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    size = x.dtype.itemsize
    if size < 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint8 if size == 1 else jnp.uint16).astype(jnp.uint32)
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


@jax.jit
def _fingerprint(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Two 32-bit lanes of `sum_i fmix(word_i ^ fmix(i + seed))` (exact integer sums: any sharding, any order)
    and whether `x` is finite. A changed word changes each lane with probability 1 - 2**-32."""
    finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
    w = _words(x)
    index, stride = jnp.zeros(w.shape, jnp.uint32), 1
    for axis in reversed(range(w.ndim)):  # the flat position of each word, without a reshape
        index = index + jax.lax.broadcasted_iota(jnp.uint32, w.shape, axis) * jnp.uint32(stride % 2**32)
        stride *= w.shape[axis]
    lanes = [jnp.sum(_fmix(w ^ _fmix(index * jnp.uint32(0x9E3779B9) + jnp.uint32(seed))), dtype=jnp.uint32)
             for seed in (0x5BD1E995, 0x27D4EB2F)]
    return lanes[0], lanes[1], finite


def _named_leaves(tree: Any) -> dict[str, Any]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(_key_str(k) for k in path) or "<root>": leaf for path, leaf in flat}


def _fingerprints(tree: Any, *, refuse_nonfinite: bool = False) -> dict[str, str]:
    """`{leaf name: "dtype:fingerprint"}` for every leaf (non-finite leaves map to "nonfinite")."""
    leaves = {name: jnp.asarray(leaf) for name, leaf in _named_leaves(tree).items()}
    pending = {name: _fingerprint(leaf) for name, leaf in leaves.items()}  # dispatched together, fetched below
    out = {}
    for name, (a, b, finite) in pending.items():
        if not bool(finite):
            if refuse_nonfinite:
                raise ValueError(f"state leaf {name!r} holds NaN or inf: not saved (a checkpoint must restore to "
                                 "finite values)")
            out[name] = "nonfinite"
        else:
            out[name] = f"{leaves[name].dtype}:{int(a):08x}{int(b):08x}"
    return out


def _verify(state: Any, metrics: Any, integrity: dict | None) -> None:
    """Raises `_Unreadable` if `state` holds non-finite values or differs from the fingerprints saved with it."""
    found = _fingerprints(state)
    bad = next((name for name, fp in found.items() if fp == "nonfinite"), None)
    if bad is not None:
        raise _Unreadable(f"{bad!r} holds NaN or inf")
    if integrity is None:  # format 1: saved before fingerprints
        return
    for name, fp in found.items():
        saved = integrity["arrays"].get(name)
        if saved is None:
            raise _Unreadable(f"no checksum was saved for {name!r}")
        if saved.split(":")[0] == fp.split(":")[0] and saved != fp:  # a dtype cast on restore cannot be verified
            raise _Unreadable(f"the data of {name!r} does not match its checksum (changed or damaged after the save)")
    if integrity.get("metrics") != _digest(metrics or None):
        raise _Unreadable("its metrics do not match their checksum")


def _abstract_leaf(x: Any) -> Any:
    if isinstance(x, jax.ShapeDtypeStruct):
        if x.sharding is None and jax.process_count() == 1:
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
        return x
    if isinstance(x, jax.Array):  # shape, dtype and sharding only: the buffer may have been donated
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x


def _key_str(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _leaf_shapes(tree: Any, *, saved: bool) -> dict[str, tuple]:
    if saved:  # Orbax metadata: nested dicts/lists with *Metadata leaves
        is_leaf = lambda x: not isinstance(x, (dict, list, tuple)) and x is not None  # noqa: E731
    else:
        is_leaf = None
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    shapes = {}
    for path, leaf in flat:
        name = "/".join(_key_str(k) for k in path) or "<root>"
        shape = tuple(getattr(leaf, "shape", None) or ())
        dtype = getattr(leaf, "dtype", None)
        if not saved and dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            shape = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype)).shape
        shapes[name] = shape
    return shapes


def _check_compatible(saved_tree: Any, abstract: Any, path: Path, directory: Path) -> None:
    saved = _leaf_shapes(saved_tree, saved=True)
    wanted = _leaf_shapes(abstract, saved=False)
    problems = [f"key {k!r} is in the target but not in the checkpoint" for k in wanted if k not in saved]
    problems += [f"key {k!r} is in the checkpoint but not in the target" for k in saved if k not in wanted]
    problems += [
        f"key {k!r} has shape {saved[k]} in the checkpoint but {wanted[k]} in the target"
        for k in wanted
        if k in saved and saved[k] != wanted[k]
    ]
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise ValueError(
            f"checkpoint {path} does not match the state being restored: {problems[0]}{more}. The workdir "
            f"{directory.parent if directory.name == 'checkpoints' else directory} holds a checkpoint of another "
            "model or config: use a new --workdir, or the config it was saved with (Checkpoints.read_config())"
        )


def _errno_in(e: BaseException) -> int | None:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return e.errno
        text = str(e)
        if "No space left on device" in text:
            return errno.ENOSPC
        if "Read-only file system" in text:
            return errno.EROFS
        e = e.__cause__ or e.__context__
    return None


def _short(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."
