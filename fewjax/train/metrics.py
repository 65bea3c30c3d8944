"""Where metrics go: a JSONL file in the workdir and TensorBoard event files (tensorboardX, no TensorFlow).

Only the writer of process 0 writes; on other processes it is inert.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import jax


class MetricWriter:
    def __init__(self, workdir: str | Path, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            workdir = Path(workdir)
            self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")
            self._tb = SummaryWriter(str(workdir / "tensorboard"))

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


def _number(v):
    v = float(v)
    return v if math.isfinite(v) else None
