"""Where metrics go: a JSONL file in the workdir and TensorBoard event files (tensorboardX, no TensorFlow).

Only the writer of process 0 writes; on other processes it is inert.

One row per step, also across resumes: a run killed after its last checkpoint has logged steps that the resumed
run logs again, so a writer opened with `resume_step=s` first drops the rows past step `s` from `metrics.jsonl`
(and a last line cut short by the kill), rewriting the file atomically, and tells TensorBoard to discard its
events from step `s + 1` on (`purge_step`).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import jax


class MetricWriter:
    """Appends `{"step": s, "<prefix>/<name>": value, ...}` rows to `workdir/metrics.jsonl` and to TensorBoard.

    Args:
      workdir: the run's directory.
      resume_step: the step training (re)starts from; rows logged past it by an earlier run are dropped.
      enabled: write (default: on process 0 only).
    """

    def __init__(self, workdir: str | Path, *, resume_step: int = 0, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            workdir = Path(workdir)
            truncate_rows(workdir / "metrics.jsonl", resume_step)
            self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")
            self._tb = SummaryWriter(str(workdir / "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, metrics: dict, *, prefix: str) -> None:
        if not self.enabled:
            return
        row = {f"{prefix}/{k}": _number(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), **row}) + "\n")
        self._jsonl.flush()
        for k, v in row.items():
            if v is not None:
                self._tb.add_scalar(k, v, int(step))
        self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def truncate_rows(path: Path, last_step: int) -> None:
    """Keeps the complete rows of `path` with `step <= last_step`; rewrites it atomically if anything goes."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if _row_step(line) is not None and _row_step(line) <= last_step]
    if kept == lines:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


def _row_step(line: str) -> int | None:
    """The step of a complete JSONL row, or None for a line cut short (no newline, or not JSON)."""
    if not line.endswith("\n"):
        return None
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _number(v):
    v = float(v)
    return v if math.isfinite(v) else None
