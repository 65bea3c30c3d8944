"""The machine's own limit: dense matrix-product throughput, measured now, so other figures can say how far they are.

    PYTHONPATH=. python bench/peak.py [--size 2048] [--dtypes float32,bfloat16] [--repeats 10]

Times `jnp.dot` of two random `size x size` matrices (jitted, result waited for) after a warm-up, and reports the
best and median GFLOP/s over `--repeats` products (2 n^3 FLOPs each), with numpy's float32 product beside it on the
CPU. Benchmarks import `gemm_peak_gflops()` to put a fraction-of-peak beside their throughput. Writes one JSON line
per dtype to stdout and `bench/results/peak_<platform>.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _gflops(seconds: list[float], size: int) -> tuple[float, float]:
    flops = 2.0 * size ** 3
    return flops / min(seconds) / 1e9, flops / statistics.median(seconds) / 1e9


def time_jax_gemm(size: int, dtype: str, repeats: int) -> list[float]:
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size), jnp.dtype(dtype))
    b = jax.random.normal(key_b, (size, size), jnp.dtype(dtype))
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return times


def time_numpy_gemm(size: int, repeats: int) -> list[float]:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size), np.float32), rng.standard_normal((size, size), np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return times


def measure(size: int = 2048, dtypes: tuple[str, ...] = ("float32",), repeats: int = 10) -> list[dict]:
    """One record per dtype: best and median GFLOP/s of jax's product (and numpy's on the CPU)."""
    platform = jax.default_backend()
    device = jax.devices()[0]
    records = []
    for dtype in dtypes:
        best, median = _gflops(time_jax_gemm(size, dtype, repeats), size)
        record = {"bench": "gemm_peak", "platform": platform, "device": getattr(device, "device_kind", str(device)),
                  "dtype": dtype, "size": size, "repeats": repeats, "gflops_best": round(best, 1),
                  "gflops_median": round(median, 1), "loadavg_1m": os.getloadavg()[0], "cpu_count": os.cpu_count()}
        if platform == "cpu" and dtype == "float32":
            np_best, np_median = _gflops(time_numpy_gemm(size, repeats), size)
            record.update(numpy_gflops_best=round(np_best, 1), numpy_gflops_median=round(np_median, 1))
        records.append(record)
    return records


def gemm_peak_gflops(dtype: str = "float32", *, size: int = 2048, repeats: int = 5) -> float:
    """The best jitted matrix-product GFLOP/s of this device in `dtype`, measured now."""
    return measure(size, (dtype,), repeats)[0]["gflops_best"]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--dtypes", default="float32")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=None, help="default bench/results/peak_<platform>.json")
    a = p.parse_args(argv)
    if a.size < 1 or a.repeats < 1:
        p.error("--size and --repeats must be >= 1")
    records = measure(a.size, tuple(a.dtypes.split(",")), a.repeats)
    for r in records:
        print(json.dumps(r))
    out = a.out or RESULTS / f"peak_{jax.default_backend()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1) + "\n")
    return records


if __name__ == "__main__":
    main()
