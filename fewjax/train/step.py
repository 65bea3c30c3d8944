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

With adaptive task sampling (`task_sampling`, a `fewjax.data.task_sampling.AdaptiveSampling`, on-device sampling
only) the step draws its classes with the weights of `state.sampling`, the per-class difficulty estimate, takes
the meta-gradient task by task (`per_task_meta_grad`: the same mean gradient, and each task's own loss) and moves
the estimate of the classes it drew towards their tasks' losses; the next step draws with the new weights.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from fewjax.data.task_sampling import AdaptiveSampling, effective_classes
from fewjax.experiment.state import TrainState
from fewjax.placement import batch_sharding, per_device, task_axes


def make_train_step(method, tx, *, meta_batch_size: int, sampler=None, steps_per_call: int = 1,
                    ema_decay: float = 0.0, task_sharding: NamedSharding | None = None,
                    task_sampling: AdaptiveSampling | None = None, task_loop: str = "vmap"):
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
      task_sampling: adaptive task sampling (`fewjax.data.task_sampling.adaptive_sampling`); the state must then
        carry its estimate (`init_state(..., task_classes=)`) and `sampler` must sample on the device. None:
        uniform sampling, the step of before.
      task_loop: with `task_sampling`, how the tasks' meta-gradients are taken one task each: "vmap" (all at once)
        or "scan" (one after another), as the resolved `config.task_loop`.
    """
    if task_sampling is not None:
        if sampler is None:
            raise ValueError("adaptive task sampling draws its classes on the device: pass the episode sampler "
                             "(the split must fit on the device), or sample uniformly.")
        meta_grad = adaptive_meta_grad(method, task_sampling, meta_batch_size=meta_batch_size, sampler=sampler,
                                       task_loop=task_loop, task_sharding=task_sharding)
    else:
        uniform = mean_meta_grad(method, meta_batch_size=meta_batch_size, sampler=sampler,
                                 task_sharding=task_sharding)
        meta_grad = lambda params, data, step, sampling: (*uniform(params, data, step), sampling)  # noqa: E731

    def one_update(state: TrainState, data):
        grads, metrics, sampling = meta_grad(state.params, data, state.step, state.sampling)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(metrics["loss"])
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
        sampling = keep(sampling, state.sampling)
        ema = state.ema_params
        if ema is not None:
            ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
        nonfinite = jnp.where((state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step)
        return TrainState(state.step + 1, params, opt_state, ema, nonfinite, sampling), metrics

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
    mesh, axes, spec, local_size = split_tasks(task_sharding, meta_batch_size)

    def local(params, data, step):
        first = jax.lax.axis_index(axes) * local_size
        tasks = data if sampler is None else sampler.device_sample(data, step, first + jnp.arange(local_size))
        return jax.lax.pmean(method.meta_grad(params, tasks, step, first_task=first), axes)

    data_spec = PartitionSpec() if sampler is not None else spec
    return per_device(local, mesh, in_specs=(PartitionSpec(), data_spec, PartitionSpec()), out_specs=PartitionSpec())


def adaptive_meta_grad(method, task_sampling: AdaptiveSampling, *, meta_batch_size: int, sampler, task_loop: str,
                       task_sharding: NamedSharding | None = None):
    """`(params, data, step, sampling) -> (gradient, metrics, sampling)` with adaptive task sampling.

    The tasks of step `step` are drawn (from `(seed, step, task index)`, as always) with the class weights of
    `sampling` added to `data.log_weights`; the gradient and metrics are their means, as `mean_meta_grad`'s;
    `sampling` comes back updated with each task's loss. Metrics add `sampling_effective_classes`, the number of
    classes uniform sampling over them would match (`exp` of the weights' entropy). With `task_sharding`, each
    device draws and differentiates its own tasks, and the estimate's update sums every device's observations.
    """
    per_task = per_task_meta_grad(method, task_loop=task_loop)

    def draw(data, step, sampling, task_indices):
        log_weights = data.log_weights + task_sampling.log_weights(sampling)
        tasks, classes = sampler.device_sample_with_classes(data._replace(log_weights=log_weights), step,
                                                            task_indices)
        return tasks, classes, {"sampling_effective_classes": effective_classes(log_weights)}

    if task_sharding is None:
        def whole(params, data, step, sampling):
            tasks, classes, extra = draw(data, step, sampling, jnp.arange(meta_batch_size))
            grads, metrics = per_task(params, tasks, step)
            sampling = task_sampling.update(sampling, classes, metrics["loss"])
            return grads, {**jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics), **extra}, sampling

        return whole
    mesh, axes, _, local_size = split_tasks(task_sharding, meta_batch_size)

    def local(params, data, step, sampling):
        first = jax.lax.axis_index(axes) * local_size
        tasks, classes, extra = draw(data, step, sampling, first + jnp.arange(local_size))
        grads, metrics = per_task(params, tasks, step, first)
        sampling = task_sampling.update(sampling, classes, metrics["loss"], axis_name=axes)
        grads, metrics = jax.lax.pmean((grads, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)), axes)
        return grads, {**metrics, **extra}, sampling

    return per_device(local, mesh, in_specs=(PartitionSpec(),) * 4, out_specs=PartitionSpec())


def split_tasks(task_sharding: NamedSharding, meta_batch_size: int):
    """`(mesh, task axes, task-axis spec, tasks per device)` for a meta-batch split over every device of
    `task_sharding`'s mesh; refuses a sharding that does not split the task axis over all of them evenly."""
    mesh = task_sharding.mesh
    axes, spec = task_axes(mesh), batch_sharding(mesh).spec
    if task_sharding.spec != spec or meta_batch_size % mesh.size:
        raise ValueError(f"task_sharding {task_sharding.spec} with meta_batch_size={meta_batch_size}: split the task "
                         f"axis over every device (fewjax.placement.batch_sharding(mesh), spec {spec}) and use "
                         f"a multiple of the {mesh.size} devices.")
    return mesh, axes, spec, meta_batch_size // mesh.size


def per_task_meta_grad(method, *, task_loop: str = "vmap"):
    """`(params, tasks, step, first_task=0) -> (mean gradient, metrics [B])`: `method.meta_grad` of each task alone
    (told its place in the meta-batch, `first_task` + its index, so that it draws what the whole batch draws for it).

    The mean gradient is the meta-batch's (to float rounding: the tasks' gradients are summed in another order);
    the metrics keep one value per task, e.g. each task's own `loss`, which `method.meta_grad` averages away.
    `task_loop`: "vmap" takes the tasks' gradients all at once (one gradient per task in memory), "scan" one task
    after another, summing (the memory of one task: what the CPU uses for methods with per-task weights).
    """
    if task_loop not in ("vmap", "scan"):
        raise ValueError(f"task_loop={task_loop!r}: choose vmap or scan (resolve 'auto' with "
                         "fewjax.methods.resolve_platform).")

    def per_task(params, tasks, step, first_task=0):
        def one(task_and_index):
            task, index = task_and_index
            return method.meta_grad(params, jax.tree.map(lambda x: x[None], task), step, first_task=index)

        size = jax.tree.leaves(tasks)[0].shape[0]
        indexed = (tasks, first_task + jnp.arange(size))
        if task_loop == "vmap":
            grads, metrics = jax.vmap(one)(indexed)
            return jax.tree.map(lambda g: jnp.mean(g, axis=0), grads), metrics
        shapes = jax.eval_shape(one, jax.tree.map(lambda x: x[0], indexed))[0]
        total, metrics = jax.lax.scan(lambda acc, task: _add_grads(acc, one(task)),
                                      jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), indexed)
        return jax.tree.map(lambda g: g / jnp.asarray(size, g.dtype), total), metrics

    return per_task


def _add_grads(total, grads_and_metrics):
    grads, metrics = grads_and_metrics
    return jax.tree.map(jnp.add, total, grads), metrics
