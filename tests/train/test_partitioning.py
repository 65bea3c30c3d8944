"""N devices do 1/N of the work each: the compiled programs, read per device (FLOPs and collective bytes).

For N in (2, 4, 8) fake CPU devices the training step (on-device sampling, meta-gradient, Adam) and the
evaluation step are compiled for a meta-batch of 8 tasks and compared with the one-device program on the same 8
tasks: per-device FLOPs (counted through loops by trip count, `fewjax.train.program_cost`) must be about 1/N of
the one-device FLOPs, and the only communication one all-reduce of the gradients (training) or none
(evaluation). Both task loops are covered: the CPU fast path (task_loop=scan, conv_grad=matmul) and the
accelerator path (task_loop=vmap, conv_grad=xla).

The device count of a JAX process is fixed at start, so the programs are compiled in one subprocess with 8 fake
devices (meshes over the first N of them). Conv4 is cut to one block (`build_model` patched in the subprocess):
the same layers and per-task weights, a program XLA compiles in seconds.
"""
import json

import pytest

from tests.train.test_multidevice import run_in_subprocess

DEVICE_COUNTS = (2, 4, 8)
META_BATCH = 8
CASES = [("maml", "scan", "matmul"), ("maml", "vmap", "xla"), ("protonet", "vmap", "matmul"),
         pytest.param(("protonet", "vmap", "xla"), marks=pytest.mark.slow)]  # differs from the third in conv_grad


def tiny_method_config(method: str, task_loop: str, conv_grad: str):
    """3-way 1-shot, 2 queries, a meta-batch of 8, conv4-8; MAML adapts 1 step in training and 2 in evaluation."""
    from fewjax.experiment.config import base_config

    c = base_config()
    c.method, c.dataset, c.meta_batch_size = method, "image_folder", META_BATCH
    c.ways = c.test_ways = 3
    c.shots = c.test_shots = 1
    c.queries = c.test_queries = 2
    c.inner_steps, c.eval_inner_steps = 1, 2
    c.model.hidden, c.task_loop, c.model.conv_grad = 8, task_loop, conv_grad
    return c


def one_block_conv4(config, *, classes):
    from fewjax.models import Conv4

    return Conv4(num_classes=classes, hidden=config.model.hidden, blocks=1, conv_grad=config.model.conv_grad)


def program_costs(method: str, task_loop: str, conv_grad: str, device_counts) -> dict:
    """{"train"|"eval": {N: compiled_cost}} of the trainer's step and of evaluation on the first N devices.

    N = 1 is the one-device program (no task sharding) on this process's first device, as the trainer builds it
    on one device; N > 1 the first N devices of all processes (with `jax.distributed`, every process compiles).
    """
    import jax
    import numpy as np

    import fewjax.methods as methods
    from fewjax.methods import backbone
    from fewjax.data import ArraySource, episodes
    from fewjax.train.program_cost import compiled_cost
    from fewjax.placement import batch_sharding, make_mesh, map_per_device, replicated, state_shardings
    from fewjax.experiment.state import init_state, outer_optimizer
    from fewjax.train.step import make_train_step

    backbone.build_model = one_block_conv4
    config = tiny_method_config(method, task_loop, conv_grad)
    rng = np.random.default_rng(0)
    source = ArraySource(rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8), np.repeat(np.arange(10), 4),
                         [str(i) for i in range(10)])
    sampler = episodes(source, ways=config.ways, shots=config.shots, queries=config.queries, seed=0)
    m, tx = methods.build_method(config), outer_optimizer(config)
    params = m.init(jax.random.key(0), sampler.sample(0).support.x)
    costs: dict = {"train": {}, "eval": {}, "param_bytes": sum(p.nbytes for p in jax.tree.leaves(params))}
    for n in device_counts:
        mesh = make_mesh(devices=jax.local_devices()[:1] if n == 1 else jax.devices()[:n])
        state = init_state(params, tx, ema=False)
        placement = state_shardings(state, mesh)
        step = jax.jit(make_train_step(m, tx, meta_batch_size=META_BATCH, sampler=sampler,
                                       task_sharding=batch_sharding(mesh) if n > 1 else None),
                       donate_argnums=0, out_shardings=(placement, replicated(mesh)))
        lowered = step.lower(jax.device_put(state, placement), sampler.device_state(replicated(mesh)))
        costs["train"][n] = compiled_cost(lowered.compile())
        evaluate = jax.jit(map_per_device(m.evaluate, mesh) if n > 1 else m.evaluate)
        tasks = jax.device_put(sampler.eval_set(META_BATCH, seed=1), batch_sharding(mesh))
        costs["eval"][n] = compiled_cost(evaluate.lower(jax.device_put(params, replicated(mesh)), tasks).compile())
    return costs


def assert_partitioned(costs: dict, kind: str, *, param_bytes: int, device_counts=DEVICE_COUNTS):
    """Per-device FLOPs within [0.9, 1.1] / N of one device; collectives: the gradients' all-reduce, or none."""
    one = costs[kind]["1"]
    assert one["collective_bytes"] == 0 and one["unknown_trip_counts"] == 0
    for n in device_counts:
        cost = costs[kind][str(n)]
        ratio = cost["flops"] / one["flops"]
        assert 0.9 / n <= ratio <= 1.1 / n, f"{kind} on {n} devices: {ratio:.3f} of one device's FLOPs per device"
        if kind == "eval":
            assert cost["collectives"] == {}, f"evaluation on {n} devices communicates: {cost['collectives']}"
        else:  # the mean gradient and the mean metrics, in one all-reduce; no activation ever moves
            assert list(cost["collectives"]) == ["all-reduce"], cost["collectives"]
            assert param_bytes <= cost["collective_bytes"] <= 1.1 * param_bytes + 256, (cost, param_bytes)


@pytest.fixture(scope="module", params=CASES, ids=["maml-scan-matmul", "maml-vmap-xla", "protonet-vmap-matmul",
                                                    "protonet-vmap-xla"])
def case_costs(request):
    method, task_loop, conv_grad = request.param
    code = f"""
import json
from tests.train.test_partitioning import program_costs
print("RESULT" + json.dumps(program_costs({method!r}, {task_loop!r}, {conv_grad!r}, (1, 2, 4, 8))))
"""
    return request.param, json.loads(run_in_subprocess(code, devices=8, timeout=900).split("RESULT", 1)[1])


@pytest.mark.parametrize("kind", ["train", "eval"])
def test_each_device_does_one_nth_of_the_work(case_costs, kind):
    _, costs = case_costs
    assert_partitioned(costs, kind, param_bytes=costs["param_bytes"])
