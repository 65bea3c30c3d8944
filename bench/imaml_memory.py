"""Memory against inner steps: iMAML (5 CG steps) beside second-order MAML with and without remat.

    PYTHONPATH=. python bench/imaml_memory.py [--steps 1,5,20,50]

XLA's planned memory (arguments + outputs + temporaries - donated aliases; compiled, not executed) of one task's
meta-gradient: conv4 (64 filters), Omniglot-shaped 5-way 1-shot with 15 queries. One JSON line per inner-step count,
appended to bench/results/imaml_memory.jsonl. Compiling 50 unrolled-in-scan second-order steps takes minutes on a
2-core CPU.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import fewjax
from fewjax.models import Conv4, apply_fn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce import append_record  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "imaml_memory.jsonl"


def planned_mb(kernel, loss_fn, params, task) -> float:
    compiled = jax.jit(jax.grad(lambda p: kernel(loss_fn, p, task)[0])).lower(params).compile()
    m = compiled.memory_analysis()
    return round((m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                  - m.alias_size_in_bytes) / 2**20, 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", default="1,5,20,50")
    a = p.parse_args(argv)
    model = Conv4(num_classes=5)
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    loss_fn = fewjax.classification_loss(apply_fn(model))
    task = fewjax.Task(fewjax.Batch(jnp.zeros((5, 28, 28, 1)), jnp.arange(5)),
                       fewjax.Batch(jnp.zeros((75, 28, 28, 1)), jnp.arange(75) % 5))
    for n in (int(s) for s in a.steps.split(",")):
        maml = functools.partial(fewjax.maml_loss, inner_steps=n, inner_lr=0.1, diagnostics=False)
        row = dict(inner_steps=n,
                   imaml_mb=planned_mb(functools.partial(fewjax.imaml_loss, inner_steps=n, inner_lr=0.1, lam=2.0,
                                                         cg_steps=5, diagnostics=False), loss_fn, params, task),
                   maml_mb=planned_mb(maml, loss_fn, params, task),
                   maml_remat_mb=planned_mb(functools.partial(maml, remat=True), loss_fn, params, task),
                   load=round(os.getloadavg()[0], 1), jax=jax.__version__)
        append_record(RESULTS, row)


if __name__ == "__main__":
    main()
