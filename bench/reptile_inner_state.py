"""Reptile's inner Adam reset for every task (`per_task`) against carried from task to task (`carried`, as Nichol
et al.'s code runs it), at equal meta-steps, written as their code runs it: the tasks of a meta-step one after
another, the inner Adam state passed from each to the next.

    PYTHONPATH=. python bench/reptile_inner_state.py [--variants carried,per_task] [--steps 1500] [--every 500]

Both variants run `configs/omniglot_reptile.py:5w1s` (inner mini-batches of 10, 5 steps at lr 1e-3, meta-batch 5)
with the outer step size annealed as over a `--schedule`-step run, and validate on `--val-episodes` 5-way 1-shot
episodes (50 full-batch inner steps from the trained state, transductive), writing one JSON line per validation to
bench/results/reptile_inner_state.jsonl. fewjax's own `config.inner_state="carried"` starts every task of a step from
the same state and keeps their mean (`fewjax.methods.reptile`); this script is the reference it approximates.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fewjax  # noqa: E402
from fewjax.experiment.data import make_sampler  # noqa: E402
from fewjax.methods import backbone, resolve_platform  # noqa: E402
from fewjax.models import apply_fn  # noqa: E402
from reproduce import ROOT, append_record, commit, hardware, preset_config  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "reptile_inner_state.jsonl"


def run(variant: str, *, steps: int, every: int, schedule: int, val_episodes: int, config=None, results=RESULTS):
    """Trains `steps` meta-steps of `variant`, validating every `every`; returns the final weights."""
    config = config or resolve_platform(preset_config("omniglot_reptile", "5w1s"))
    model = backbone.build_model(config, classes=config.ways)
    loss_fn = fewjax.classification_loss(apply_fn(model))
    train, val = make_sampler(config, "train", seed=0), make_sampler(config, "val", seed=0)
    tx = optax.adam(config.inner_lr, b1=0.0)
    theta = model.init(jax.random.PRNGKey(0), jnp.asarray(train.sample(0).support.x[:1]))["params"]
    fresh = tx.init(theta)

    def inner(params, state, batches):
        def step(carry, batch):
            p, s = carry
            updates, s = tx.update(jax.grad(lambda w: loss_fn(w, batch)[0])(p), s, p)
            return (optax.apply_updates(p, updates), s), None
        return jax.lax.scan(step, (params, state), batches)[0]

    @jax.jit
    def meta_step(theta, state, tasks, key, lr):
        def one(state, task_key):
            task, k = task_key
            data = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), task.support, task.query)
            batches = fewjax.inner_minibatches(data, batch_size=config.inner_batch_size, steps=config.inner_steps,
                                               rng=k)
            adapted, after = inner(theta, state if variant == "carried" else fresh, batches)
            return (after if variant == "carried" else state), adapted
        state, adapted = jax.lax.scan(one, state, (tasks, jax.random.split(key, config.meta_batch_size)))
        return jax.tree.map(lambda t, a: t + lr * (jnp.mean(a, 0) - t), theta, adapted), state

    @jax.jit
    def accuracy(theta, state, tasks):
        def one(task):
            full = jax.tree.map(lambda a: jnp.broadcast_to(a, (config.eval_inner_steps,) + a.shape), task.support)
            adapted, _ = inner(theta, state if variant == "carried" else fresh, full)
            return loss_fn(adapted, task.query)[1]["accuracy"]
        return jax.lax.map(one, tasks)

    state, start = fresh, time.time()
    for s in range(steps):
        tasks = jax.tree.map(jnp.asarray, train.sample_batch(s, config.meta_batch_size))
        theta, state = meta_step(theta, state, tasks, jax.random.fold_in(jax.random.PRNGKey(1), s), 1.0 - s / schedule)
        if (s + 1) % every == 0:
            accs = np.concatenate([np.asarray(accuracy(theta, state, jax.tree.map(jnp.asarray, b)))
                                   for b in val.eval_batches(val_episodes, seed=1, batch_size=min(25, val_episodes))])
            record = dict(variant=variant, step=s + 1, schedule=schedule, val_episodes=val_episodes,
                          val_accuracy=round(float(accs.mean()), 4), seconds=round(time.time() - start),
                          load_average=round(os.getloadavg()[0], 2), hardware=hardware(), commit=commit())
            append_record(results, record)
    return theta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="carried,per_task")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--schedule", type=int, default=15000)
    parser.add_argument("--val-episodes", type=int, default=100)
    args = parser.parse_args()
    for variant in args.variants.split(","):
        run(variant, steps=args.steps, every=args.every, schedule=args.schedule, val_episodes=args.val_episodes)


if __name__ == "__main__":
    main()
