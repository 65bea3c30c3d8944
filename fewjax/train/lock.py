"""One owner per workdir: a lock file naming the process that trains there.

`hold_workdir(workdir)` takes `WORKDIR/fewjax.lock` for the duration of a `with` block. The file is created
atomically (written under a unique name, then hard-linked into place, which fails if it exists, also on NFS) and
holds `{"host", "pid", "started", ...}`, so a second run refuses at once with `WorkdirBusyError` naming the
workdir, the host and the pid that hold it.

A lock left by a process that died without releasing it (kill -9, a lost node) does not block the next run:

* same host (same boot and pid namespace): the lock is stale as soon as its pid is gone (or reused by a process
  that started later);
* another host, or a pid we cannot see: the holder touches the file every `HEARTBEAT_SECONDS`; the lock is stale
  when its modification time is older than `STALE_SECONDS` (10 minutes).

A stale lock is taken over with a warning naming its holder. Removing it is serialised by a second lock file
(`fewjax.lock.break`) and checks that the lock is still the one judged stale, so a live lock is never removed and
two runs racing for a stale lock cannot both win.

Multi-process jobs (`jax.distributed`) are one owner: process 0 takes the lock and tells the others the outcome,
so every process of a refused job raises the same error.

Example::

    with hold_workdir("runs/pn"):
        ...  # train; a second `hold_workdir("runs/pn")` anywhere raises WorkdirBusyError
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid
import warnings
from pathlib import Path

import jax
import numpy as np

__all__ = ["LOCK_NAME", "WorkdirBusyError", "WorkdirLock", "hold_workdir"]

logger = logging.getLogger(__name__)

LOCK_NAME = "fewjax.lock"
HEARTBEAT_SECONDS = 30.0
"""How often the holder refreshes the lock file's modification time."""
STALE_SECONDS = 600.0
"""A lock not refreshed for this long is stale (the only test possible for a holder on another host)."""


class WorkdirBusyError(RuntimeError):
    """Another process (named in the message) holds the workdir."""


def process_identity() -> dict:
    """What names this process in a lock: host, pid, and what tells a live pid from a reused or foreign one."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "boot_id": _boot_id(), "pid_ns": _pid_namespace(),
            "pid_start": _pid_start(os.getpid())}


def stale_reason(holder: dict, age_seconds: float, *, me: dict, stale_after: float = STALE_SECONDS) -> str | None:
    """Why the lock of `holder` (last refreshed `age_seconds` ago) may be taken over, or None if it is live."""
    if age_seconds > stale_after:
        return f"not refreshed for {age_seconds:.0f} s (stale after {stale_after:.0f} s)"
    local = holder.get("host") == me["host"] and holder.get("boot_id") == me["boot_id"]
    if holder.get("host") == me["host"] and me["boot_id"] and holder.get("boot_id") not in (None, me["boot_id"]):
        return "its host has rebooted since"
    if not local or holder.get("pid_ns") != me["pid_ns"] or not isinstance(holder.get("pid"), int):
        return None  # a pid of another machine or container: only the heartbeat can tell
    pid = holder["pid"]
    if pid == me["pid"]:
        return None if holder.get("pid_start") == me["pid_start"] else "its pid is now this process"
    if not _pid_alive(pid):
        return f"process {pid} is no longer running"
    if holder.get("pid_start") is not None and _pid_start(pid) not in (None, holder["pid_start"]):
        return f"pid {pid} now belongs to another process"
    return None


def describe_holder(holder: dict) -> str:
    """`process 1234 on host h (started 2025-01-01T10:00:00, 2 processes)`."""
    extra = f", {holder['processes']} processes" if holder.get("processes", 1) > 1 else ""
    return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(started {holder.get('started', '?')}{extra})")


class WorkdirLock:
    """The lock file of one workdir. `acquire()` or raise `WorkdirBusyError`; `release()` removes it if ours."""

    def __init__(self, workdir: str | os.PathLike, *, stale_after: float = STALE_SECONDS,
                 heartbeat: float = HEARTBEAT_SECONDS):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self._stale_after = stale_after
        self._heartbeat = heartbeat
        self._record: bytes | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, *, processes: int = 1) -> WorkdirLock:
        me = process_identity()
        record = {**me, "started": datetime.datetime.now().isoformat(timespec="seconds"), "processes": processes,
                  "token": uuid.uuid4().hex}
        data = (json.dumps(record) + "\n").encode()
        for _ in range(5):  # a few rounds: the holder may release, or another run may break a stale lock with us
            if self._create(data):
                self._record = data
                self._start_heartbeat()
                return self
            raw, age = self._read()
            if raw is None:
                continue  # released meanwhile
            holder = _parse(raw)
            reason = self._why_stale(holder, age, me)
            if reason is None:
                raise WorkdirBusyError(busy_message(self.workdir, holder, self.path))
            if self._break(raw):
                _warn(f"took over the lock of --workdir {self.workdir} from {describe_holder(holder or {})}: "
                      f"{reason}")
            else:
                time.sleep(0.1)  # another run is breaking it: let it finish
        raise WorkdirBusyError(busy_message(self.workdir, _parse(self._read()[0] or b""), self.path))

    def release(self) -> None:
        """Stops the heartbeat and removes the lock file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._record is not None and self._read()[0] == self._record:
            self.path.unlink(missing_ok=True)
        self._record = None

    # ------------------------------------------------------------------ internals

    def _why_stale(self, holder: dict | None, age: float, me: dict) -> str | None:
        if holder is None:  # not JSON: a damaged file (ours are written whole, then linked into place)
            return "its lock file is unreadable" if age > self._stale_after else None
        return stale_reason(holder, age, me=me, stale_after=self._stale_after)

    def _create(self, data: bytes, path: Path | None = None) -> bool:
        """Creates `path` (the lock) holding `data`, atomically; False if it exists."""
        path = path or self.path
        tmp = self.path.with_name(f".{LOCK_NAME}.{uuid.uuid4().hex}")
        try:
            tmp.write_bytes(data)
        except OSError as e:
            raise type(e)(e.errno, f"cannot create the lock file in --workdir {self.workdir} ({e.strerror}): "
                                   "choose a writable --workdir with free space, or fix its permissions") from e
        try:
            os.link(tmp, path)  # atomic, and fails if the file exists
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _read(self) -> tuple[bytes | None, float]:
        try:
            raw = self.path.read_bytes()
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None, 0.0
        return raw, age

    def _break(self, judged: bytes) -> bool:
        """Removes the stale lock `judged` if it is still there; one breaker at a time (the guard file)."""
        guard = self.path.with_name(f"{LOCK_NAME}.break")
        if not self._create(b"", guard):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - guard.stat().st_mtime > 30:  # a breaker died in these few milliseconds
                    guard.unlink()
            return False
        try:
            if self._read()[0] != judged:  # released, or taken by another run meanwhile
                return False
            self.path.unlink()
            return True
        finally:
            guard.unlink()

    def _start_heartbeat(self) -> None:
        def beat():
            while not self._stop.wait(self._heartbeat):
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        self._stop.clear()
        self._thread = threading.Thread(target=beat, name="fewjax-workdir-heartbeat", daemon=True)
        self._thread.start()


def busy_message(workdir: Path, holder: dict | None, path: Path) -> str:
    """The one-line refusal: whose the workdir is, and what to do."""
    who = describe_holder(holder) if holder else "another process (its lock file is being written or unreadable)"
    return (f"--workdir {workdir} is in use by {who}: one run per workdir. Wait for it to finish, stop it, or use "
            f"another --workdir. If that process is gone, the lock {path} expires {STALE_SECONDS / 60:.0f} minutes "
            "after its last heartbeat (same host: at once); delete it by hand to resume sooner.")


@contextlib.contextmanager
def hold_workdir(workdir: str | os.PathLike):
    """Holds `workdir` for the block: process 0 of the job takes the lock; every process raises if it is taken."""
    lock, error = WorkdirLock(workdir), None
    if jax.process_index() == 0:
        try:
            lock.acquire(processes=jax.process_count())
        except Exception as e:  # noqa: BLE001 - re-raised below, after the other processes have been told
            error = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        taken = bool(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
        if not taken and error is None:
            holder = _parse(lock._read()[0] or b"")
            error = (WorkdirBusyError(busy_message(lock.workdir, holder, lock.path)) if holder else
                     RuntimeError(f"process 0 could not take the lock of --workdir {lock.workdir}; see its error"))
    if error is not None:
        raise error
    try:
        yield lock
    finally:
        lock.release()


def _parse(raw: bytes) -> dict | None:
    try:
        holder = json.loads(raw)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _pid_start(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (Linux), telling a reused pid from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _warn(message: str) -> None:
    logger.warning("%s", message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
