"""One owner per workdir: a second run is refused naming the holder; a dead holder's lock does not block forever."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fewjax.train import train_and_evaluate
from fewjax.train.lock import LOCK_NAME, STALE_SECONDS, WorkdirBusyError, WorkdirLock, hold_workdir, process_identity
from tests.conftest import sinusoid_config
from tests.train.test_distributed import free_port

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}

HOLDER = """
import sys, time
from pathlib import Path
from fewjax.train.lock import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def write_lock(workdir: Path, age: float = 0.0, **fields) -> Path:
    path = workdir / LOCK_NAME
    path.write_text(json.dumps({**process_identity(), "started": "2025-01-01T00:00:00", **fields}))
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_second_holder_is_refused_with_the_workdir_host_and_pid(tmp_path):
    with hold_workdir(tmp_path):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(WorkdirBusyError) as err:
            WorkdirLock(tmp_path).acquire()
        message = str(err.value)
        assert str(tmp_path) in message and f"process {os.getpid()} on host {socket.gethostname()}" in message
        with pytest.raises(WorkdirBusyError, match="in use"):  # the training loop takes the same lock
            train_and_evaluate(sinusoid_config(), tmp_path, progress=False)
    assert not (tmp_path / LOCK_NAME).exists()  # released
    WorkdirLock(tmp_path).acquire().release()


def test_the_lock_of_a_killed_process_is_taken_over_at_once(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirBusyError, match=f"process {child.pid} "):
            WorkdirLock(tmp_path).acquire()
    finally:
        child.kill()  # SIGKILL: the lock file stays behind
        child.wait(30)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == child.pid
    with pytest.warns(RuntimeWarning, match=f"process {child.pid} is no longer running"):
        lock = WorkdirLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_another_host_holds_until_its_heartbeat_is_stale(tmp_path):
    write_lock(tmp_path, age=60, host="node-17", pid=4242, boot_id="other")
    with pytest.raises(WorkdirBusyError, match="process 4242 on host node-17"):
        WorkdirLock(tmp_path).acquire()
    write_lock(tmp_path, age=STALE_SECONDS + 60, host="node-17", pid=4242, boot_id="other")
    with pytest.warns(RuntimeWarning, match="node-17.*not refreshed for"):
        WorkdirLock(tmp_path).acquire().release()


def test_a_reused_pid_or_a_reboot_does_not_hold_the_lock(tmp_path):
    me = process_identity()
    if me["pid_start"] is None:
        pytest.skip("no /proc: pid start times unavailable")
    write_lock(tmp_path, pid=os.getpid(), pid_start=me["pid_start"] - 1)  # this pid, an earlier process
    with pytest.warns(RuntimeWarning, match="its pid is now this process"):
        WorkdirLock(tmp_path).acquire().release()
    write_lock(tmp_path, pid=os.getppid(), pid_start=1)  # a live pid, started at another time
    with pytest.warns(RuntimeWarning, match=f"pid {os.getppid()} now belongs to another process"):
        WorkdirLock(tmp_path).acquire().release()
    write_lock(tmp_path, pid=os.getppid(), boot_id="a-previous-boot")
    with pytest.warns(RuntimeWarning, match="rebooted"):
        WorkdirLock(tmp_path).acquire().release()
    write_lock(tmp_path, pid=os.getppid(), pid_ns="pid:[another container]")  # cannot see it: heartbeat only
    with pytest.raises(WorkdirBusyError):
        WorkdirLock(tmp_path).acquire()


def test_the_heartbeat_refreshes_the_lock(tmp_path):
    lock = WorkdirLock(tmp_path, heartbeat=0.05).acquire()
    path = tmp_path / LOCK_NAME
    os.utime(path, (time.time() - 1000, time.time() - 1000))
    deadline = time.time() + 10
    while time.time() - path.stat().st_mtime > 100 and time.time() < deadline:
        time.sleep(0.05)
    assert time.time() - path.stat().st_mtime < 100
    lock.release()
    assert not path.exists()


def test_racing_for_a_stale_lock_exactly_one_wins(tmp_path):
    for _ in range(5):
        write_lock(tmp_path, age=STALE_SECONDS + 60, host="gone", pid=1, boot_id="other")
        won, barrier = [], threading.Barrier(6)

        def contender():
            barrier.wait()
            try:
                won.append(WorkdirLock(tmp_path).acquire())
            except WorkdirBusyError:
                pass

        with pytest.warns(RuntimeWarning, match="took over"):
            threads = [threading.Thread(target=contender) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert len(won) == 1
        won[0].release()
        assert not list(tmp_path.glob(f".{LOCK_NAME}*"))  # no temporary or aside files left


JOB = """
import sys, time, types
from pathlib import Path
address, nproc, pid, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
from fewjax.cli.distributed import initialize_distributed
initialize_distributed(types.SimpleNamespace(coordinator_address=address, num_processes=nproc, process_id=pid,
                                             distributed=False))
from fewjax.train.lock import WorkdirBusyError, hold_workdir
try:
    with hold_workdir(workdir):
        print("HELD", flush=True)
        while not Path(workdir, "release").exists():
            time.sleep(0.05)
except WorkdirBusyError as e:
    print("BUSY", e, flush=True)
"""


def start_job(workdir: Path, processes: int = 2) -> list[subprocess.Popen]:
    address = f"127.0.0.1:{free_port()}"
    return [subprocess.Popen([sys.executable, "-c", JOB, address, str(processes), str(i), str(workdir)], env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]


def marker(line_source) -> str:
    """The driver's first HELD / BUSY line (gloo prints its own lines on stdout too)."""
    return next(line.strip() for line in line_source if line.startswith(("HELD", "BUSY")))


def test_a_multi_process_job_is_one_owner_and_a_second_job_is_refused_in_every_process(tmp_path):
    first = start_job(tmp_path)
    try:
        assert [marker(p.stdout) for p in first] == ["HELD", "HELD"]  # one lock, two processes
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == first[0].pid and holder["processes"] == 2
        with pytest.raises(WorkdirBusyError, match=rf"process {first[0].pid} on host .*2 processes"):
            WorkdirLock(tmp_path).acquire()
        second = start_job(tmp_path)
        outs = [marker(p.communicate(timeout=120)[0].splitlines()) for p in second]  # neither process hangs
        assert all(out.startswith(f"BUSY --workdir {tmp_path} is in use by process {first[0].pid}") for out in outs)
        (tmp_path / "release").touch()
        for p in first:
            p.wait(60)
        assert not (tmp_path / LOCK_NAME).exists()
    finally:
        for p in first:
            p.kill()
