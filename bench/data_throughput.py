"""Episode sampler throughput: episodes/s of the on-device and host paths.

Run:  PYTHONPATH=. python bench/data_throughput.py [--data-dir ../shared/data/omniglot] [--seconds 3]
Cases: Omniglot train split (4112 classes, uint8 28x28 on the device), 5-way 1-shot 15 queries meta-batch 32,
and 60-way 5-shot 5 queries meta-batch 1 (the ProtoNet training shape). Falls back to a synthetic source of the
same shape when the zips are not found. Prints one JSON line per (case, path) and writes
bench/results/data_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fewjax.data import ArraySource, episodes, omniglot, prefetch

CASES = [
    dict(name="5w1s15q_mb32", ways=5, shots=1, queries=15, meta_batch=32),
    dict(name="60w5s5q_mb1", ways=60, shots=5, queries=5, meta_batch=1),
]


def load_source(data_dir):
    try:
        return omniglot("train", data_dir=data_dir, download=False), "omniglot-train"
    except (FileNotFoundError, OSError, ValueError):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (4112 * 20, 28, 28, 1), dtype=np.uint8)
        return ArraySource(x, np.repeat(np.arange(4112), 20), [str(i) for i in range(4112)]), "synthetic-4112x20"


def time_loop(fn, seconds):
    fn(0)  # warm-up / compile
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(n + 1)
        n += 1
    return n / (time.perf_counter() - start)


def bench_device(sampler, meta_batch, seconds):
    state = sampler.device_state()
    indices = jnp.arange(meta_batch)

    @jax.jit
    def draw(state, step):
        task = sampler.device_sample(state, step, indices)
        # reduce so the benchmark does not time a device->host copy of the tasks
        return jax.tree.reduce(lambda a, b: a + jnp.sum(b), task, jnp.float32(0))

    def run(step):
        draw(state, step).block_until_ready()

    return time_loop(run, seconds)


def bench_host(sampler, meta_batch, seconds, prefetched):
    if not prefetched:
        return time_loop(lambda step: sampler.sample_batch(step, meta_batch), seconds)
    it = prefetch(sampler.batches(meta_batch), size=4)
    try:
        return time_loop(lambda step: next(it), seconds)
    finally:
        it.close()


def main():
    parser = argparse.ArgumentParser()
    default_dir = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "omniglot"
    parser.add_argument("--data-dir", default=os.environ.get("FEWJAX_DATA_DIR", str(default_dir)))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "data_throughput.json"))
    args = parser.parse_args()
    source, source_name = load_source(args.data_dir)
    results = []
    for case in CASES:
        sampler = episodes(source, ways=case["ways"], shots=case["shots"], queries=case["queries"], seed=0)
        for path in ("device", "host", "host+prefetch"):
            if path == "device":
                rate = bench_device(sampler, case["meta_batch"], args.seconds)
            else:
                rate = bench_host(sampler, case["meta_batch"], args.seconds, prefetched=path != "host")
            row = dict(case=case["name"], path=path, source=source_name, meta_batch=case["meta_batch"],
                       batches_per_s=round(rate, 2), episodes_per_s=round(rate * case["meta_batch"], 1),
                       backend=jax.default_backend(), device=str(jax.devices()[0].device_kind),
                       host=platform.node(), cpus=os.cpu_count(), load_avg_1m=round(os.getloadavg()[0], 2))
            print(json.dumps(row), flush=True)
            results.append(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
