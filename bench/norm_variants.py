"""Batch-statistics norm formulations in the trainer's step (W1, W4), side by side in one process.

    PYTHONPATH=. python bench/norm_variants.py [--workloads W4,W1] [--rounds 3] [--tasks 8]

`fewjax.models.norm.batch_stat_norm` (the library's: the mean, then the variance as the mean of squared
deviations, so two passes over the activations before normalising) against what `bench/README.md` named as a
direction worth measuring:
- `one_pass`: the variance as E[x^2] - E[x]^2, both reductions over one read of `x` (XLA may fuse them);
- `custom_vjp`: one-pass statistics and the closed-form backward pass (two reductions, one elementwise pass),
  differentiable again, so second-order MAML still works.
Before timing, each variant's value and first and second derivatives are checked against the library's in
float64. Each variant's step is compiled once; the rounds then time every variant in turn (2 steps each), so a
load change touches all of them alike. One JSON line per variant, appended to `bench/results/norm_variants.jsonl`
with the load average.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fewjax.models.norm as norm  # noqa: E402
from bench.common import WORKLOADS, build, compile_step, machine, time_steps, write_result  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "norm_variants.jsonl"


def _moments(x):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    return mean, jnp.maximum(jnp.mean(jnp.square(x), axis=axes) - jnp.square(mean), 0.0)


def one_pass(x, scale, bias, epsilon=1e-5):
    mean, var = _moments(x)
    return (x - mean) * (scale * jax.lax.rsqrt(var + epsilon)) + bias


@jax.custom_vjp
def custom_vjp(x, scale, bias):
    return _forward(x, scale, bias)[0]


def _forward(x, scale, bias, epsilon=1e-5):
    mean, var = _moments(x)
    rstd = jax.lax.rsqrt(var + epsilon)
    xhat = (x - mean) * rstd
    return xhat * scale + bias, (xhat, rstd, scale)


def _backward(res, dy):
    xhat, rstd, scale = res
    axes = tuple(range(dy.ndim - 1))
    dbias, dscale = jnp.sum(dy, axis=axes), jnp.sum(dy * xhat, axis=axes)
    return (scale * rstd) * (dy - (dbias + xhat * dscale) / (dy.size // dy.shape[-1])), dscale, dbias


custom_vjp.defvjp(_forward, _backward)
VARIANTS = {"library (two-pass)": norm.batch_stat_norm, "one_pass": one_pass,
            "custom_vjp": lambda x, scale, bias, epsilon=1e-5: custom_vjp(x, scale, bias)}


def check(fn) -> None:
    """Value, gradient and a second derivative (through an inner gradient step) equal the library's, float64."""
    with jax.enable_x64():
        rng = np.random.default_rng(0)
        x, s, b, w = (jnp.asarray(rng.normal(size=shape)) for shape in [(6, 3, 3, 4), (4,), (4,), (6, 3, 3, 4)])

        def inner_outer(f, s):
            def loss(s):
                return jnp.sum(jnp.tanh(f(x, s, b)) * w)
            return loss(s - 0.3 * jax.grad(loss)(s))

        for out in (lambda f: f(x, s, b), lambda f: jax.grad(lambda x: jnp.sum(f(x, s, b) ** 3))(x),
                    lambda f: jax.grad(lambda s: inner_outer(f, s))(s)):
            np.testing.assert_allclose(out(fn), out(norm.batch_stat_norm), rtol=1e-9, atol=1e-10)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="W4,W1")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tasks", type=int, default=8, help="MAML meta-batch (W1's 32 takes 4x longer per step)")
    args = p.parse_args(argv)
    for fn in VARIANTS.values():
        check(fn)
    library = norm.batch_stat_norm
    for w in args.workloads.split(","):
        cfg, runs = WORKLOADS[w], {}
        for name, fn in VARIANTS.items():
            norm.batch_stat_norm = fn  # what Conv4's BatchStatNorm calls
            try:
                run = build(cfg, tasks=args.tasks if cfg["kind"] == "maml" else None)
                compiled, compile_s = compile_step(run)
            finally:
                norm.batch_stat_norm = library
            losses: list[float] = []
            _, state = time_steps(compiled, run.state, run.batches, warmup=1, timed=0, losses=losses)
            runs[name] = dict(compiled=compiled, state=state, batches=run.batches, times=[],
                              compile_s=round(compile_s, 2), first_loss=losses[0], tasks=run.tasks)
        for _ in range(args.rounds):
            for r in runs.values():
                times, r["state"] = time_steps(r["compiled"], r["state"], r["batches"], warmup=0, timed=2)
                r["times"] += times
        base = statistics.median(runs["library (two-pass)"]["times"])
        for name, r in runs.items():
            median = statistics.median(r["times"])
            rec = dict(workload=w, variant=name, tasks=r["tasks"], median_step_s=round(median, 4),
                       speedup_vs_library=round(base / median, 3), timed=len(r["times"]),
                       min_step_s=round(min(r["times"]), 4), max_step_s=round(max(r["times"]), 4),
                       compile_s=r["compile_s"], first_loss=r["first_loss"], **machine())
            print(rec, flush=True)
            write_result(rec, OUT)


if __name__ == "__main__":
    main()
