"""The jitted training step: sample a meta-batch on the device, take the meta-gradient, update, repeat.

`make_train_step` returns `step(state, data) -> (state, metrics)`. With on-device sampling `data` is the
sampler's `device_state()` and the step draws the tasks of step `s` from `(seed, s, task index)` itself: no host
work and no transfer per step. With host sampling `data` is a meta-batch of tasks (leading axis `steps_per_call`
when it is above 1). The step donates `state`, runs `steps_per_call` updates in one `lax.scan`, and returns the
metrics averaged over them; the host reads them only when it logs.

On several devices (`task_sharding` given) each device samples and differentiates only its own tasks, the
program of one device on `meta_batch_size / n` tasks (`fewjax.placement.per_device`), and the gradients and
metrics are averaged with one all-reduce; parameters and the optimizer update stay replicated (or FSDP-split
outside the per-device part, by the jitted step's shardings).

A step whose loss is not finite leaves the parameters as they were and records its step in
`state.nonfinite_step`; the loop stops with an error naming it, so no checkpoint ever holds non-finite values.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from fewjax.experiment.state import TrainState
from fewjax.placement import batch_sharding, per_device, task_axes


def make_train_step(method, tx, *, meta_batch_size: int, sampler=None, steps_per_call: int = 1,
                    ema_decay: float = 0.0, task_sharding: NamedSharding | None = None):
    """Builds the (unjitted) step; jit it with `jax.jit(step, donate_argnums=0)`.

    Args:
      method: a `fewjax.methods.Method`.
      tx: the outer optax optimizer.
      meta_batch_size: tasks per update (global, over all devices and processes).
      sampler: an episode sampler with `device_sample` for on-device sampling; None when the host feeds tasks.
      steps_per_call: updates per call, in a `lax.scan`.
      ema_decay: > 0 also tracks `ema = decay * ema + (1 - decay) * params`.
      task_sharding: how the task axis is split over the mesh (`fewjax.placement.batch_sharding`): each
        device then runs the meta-gradient on its own tasks. None on one device.
    """
    meta_grad = mean_meta_grad(method, meta_batch_size=meta_batch_size, sampler=sampler, task_sharding=task_sharding)

    def one_update(state: TrainState, data):
        grads, metrics = meta_grad(state.params, data, state.step)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(metrics["loss"])
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
        ema = state.ema_params
        if ema is not None:
            ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
        nonfinite = jnp.where((state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step)
        return TrainState(state.step + 1, params, opt_state, ema, nonfinite), metrics

    def step(state: TrainState, data):
        if steps_per_call == 1:
            return one_update(state, data)
        if sampler is not None:
            state, metrics = jax.lax.scan(lambda s, _: one_update(s, data), state, None, length=steps_per_call)
        else:
            state, metrics = jax.lax.scan(one_update, state, data)
        return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

    return step


def mean_meta_grad(method, *, meta_batch_size: int, sampler=None, task_sharding: NamedSharding | None = None):
    """`(params, data, step) -> (gradient, metrics)`, both averaged over the meta-batch of step `step`.

    `data`: the sampler's `device_state()` (tasks `0 .. meta_batch_size - 1` drawn here), or the meta-batch itself
    when `sampler` is None. With `task_sharding`, device `d` of the `n` along the task axis draws (or receives)
    tasks `d * b .. (d + 1) * b - 1`, `b = meta_batch_size / n`, which is where `task_sharding` puts them; it
    takes their mean gradient alone, and one `pmean` averages the devices' means.
    """
    if task_sharding is None:
        def whole(params, data, step):
            tasks = data if sampler is None else sampler.device_sample(data, step, jnp.arange(meta_batch_size))
            return method.meta_grad(params, tasks, step)

        return whole
    mesh = task_sharding.mesh
    axes, spec = task_axes(mesh), batch_sharding(mesh).spec
    if task_sharding.spec != spec or meta_batch_size % mesh.size:
        raise ValueError(f"task_sharding {task_sharding.spec} with meta_batch_size={meta_batch_size}: split the task "
                         f"axis over every device (fewjax.placement.batch_sharding(mesh), spec {spec}) and use "
                         f"a multiple of the {mesh.size} devices.")
    local_size = meta_batch_size // mesh.size

    def local(params, data, step):
        if sampler is None:
            tasks = data
        else:
            first = jax.lax.axis_index(axes) * local_size
            tasks = sampler.device_sample(data, step, first + jnp.arange(local_size))
        return jax.lax.pmean(method.meta_grad(params, tasks, step), axes)

    data_spec = PartitionSpec() if sampler is not None else spec
    return per_device(local, mesh, in_specs=(PartitionSpec(), data_spec, PartitionSpec()), out_specs=PartitionSpec())
