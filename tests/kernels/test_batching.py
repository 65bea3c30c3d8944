"""over_tasks against a Python loop; every kernel with and without jit; no recompilation on a second call."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax
from tests.kernels.conftest import loss_fn, make_params, make_task


def embed(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"])


KERNELS = {
    "maml": functools.partial(fewjax.maml_loss, loss_fn, inner_steps=2, inner_lr=0.3),
    "fomaml": functools.partial(fewjax.maml_loss, loss_fn, inner_steps=2, inner_lr=0.3, first_order=True),
    "reptile": functools.partial(fewjax.reptile_grad, loss_fn, inner_steps=2, inner_lr=0.3),
    "protonet": functools.partial(fewjax.protonet_loss, embed, ways=3),
    "matching": functools.partial(fewjax.matching_loss, embed, ways=3),
}


def stack(tasks):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_over_tasks_equals_mean_of_loop(name):
    kernel = KERNELS[name]
    params = make_params(0, dtype=np.float32)
    tasks = [make_task(i, dtype=np.float32) for i in range(4)]
    value, metrics = fewjax.over_tasks(kernel)(params, stack(tasks))
    loop = [kernel(params, t) for t in tasks]
    mean = lambda *xs: sum(xs) / len(xs)
    chex.assert_trees_all_close(value, jax.tree.map(mean, *[v for v, _ in loop]), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(metrics, jax.tree.map(mean, *[m for _, m in loop]), rtol=1e-5, atol=1e-6)


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_every_kernel_same_with_and_without_jit(self):
        params = make_params(1, dtype=np.float32)
        tasks = stack([make_task(i, dtype=np.float32) for i in range(3)])
        for name, kernel in KERNELS.items():
            got = self.variant(fewjax.over_tasks(kernel))(params, tasks)
            want = fewjax.over_tasks(kernel)(params, tasks)
            chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6, custom_message=name)


def test_meta_step_traces_once_for_same_shapes():
    meta = fewjax.over_tasks(KERNELS["maml"])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, tasks):
        return jax.grad(lambda p: meta(p, tasks)[0])(params)

    params = make_params(2, dtype=np.float32)
    for seed in range(3):
        step(params, stack([make_task(seed * 10 + i, dtype=np.float32) for i in range(2)]))


def test_mismatched_task_axes_are_rejected():
    t = make_task(0, dtype=np.float32)
    bad = fewjax.Task(jax.tree.map(lambda a: jnp.stack([a, a]), t.support), jax.tree.map(lambda a: a[None], t.query))
    with pytest.raises(ValueError, match="same leading task axis"):
        fewjax.over_tasks(KERNELS["protonet"])(make_params(0, dtype=np.float32), bad)


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_chunks_give_the_same_mean_as_one_vmap(name, chunk_size):
    kernel = KERNELS[name]
    params = make_params(3, dtype=np.float32)
    tasks = stack([make_task(i, dtype=np.float32) for i in range(4)])
    chex.assert_trees_all_close(fewjax.over_tasks(kernel, chunk_size=chunk_size)(params, tasks),
                                fewjax.over_tasks(kernel)(params, tasks), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
@pytest.mark.parametrize("name", ["maml", "fomaml", "protonet", "matching"])
def test_value_and_grad_by_chunks_equals_value_and_grad_of_the_vmapped_mean(name, chunk_size):
    kernel = KERNELS[name]
    params = make_params(4, dtype=np.float32)
    tasks = stack([make_task(i, dtype=np.float32) for i in range(6)])
    want = jax.value_and_grad(fewjax.over_tasks(kernel), has_aux=True)(params, tasks)
    got = jax.jit(fewjax.over_tasks_value_and_grad(kernel, chunk_size=chunk_size))(params, tasks)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


def test_chunk_k_takes_one_task_from_each_contiguous_block():
    # Tasks 0..5 in chunks of 2: (0, 3), (1, 4), (2, 5), so a task axis split over 2 devices in contiguous
    # blocks gives every chunk one task per device.
    chunks = fewjax.kernels.batching._chunks(jnp.arange(6), 2, "test")
    np.testing.assert_array_equal(chunks, [[0, 3], [1, 4], [2, 5]])


@pytest.mark.parametrize("chunk_size", [0, 4, 2.0])
def test_chunk_size_must_divide_the_tasks(chunk_size):
    tasks = stack([make_task(i, dtype=np.float32) for i in range(6)])
    with pytest.raises(ValueError, match="positive divisor of the 6 tasks"):
        fewjax.over_tasks(KERNELS["protonet"], chunk_size=chunk_size)(make_params(0, dtype=np.float32), tasks)


@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_map_tasks_keeps_task_order(chunk_size):
    kernel = KERNELS["maml"]
    params = make_params(5, dtype=np.float32)
    tasks = [make_task(i, dtype=np.float32) for i in range(4)]
    got = fewjax.map_tasks(kernel, chunk_size=chunk_size)(params, stack(tasks))
    chex.assert_trees_all_close(got, stack([kernel(params, t) for t in tasks]), rtol=1e-5, atol=1e-6)
