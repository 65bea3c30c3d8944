"""Step time of the trainer's ProtoNet step with ResNet-12 (64-160-320-640) on an 84x84x3 5-way 1-shot 15-query episode.

    PYTHONPATH=. python bench/resnet12_step.py [HIDDEN]     # prints one JSON line (4 steps after compiling)
"""
import os, sys, time, json
import jax, jax.numpy as jnp
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from fewjax.experiment.config import base_config
from fewjax.experiment.state import outer_optimizer
from fewjax.methods import build_method
from fewjax.experiment.state import init_state
from fewjax.train.step import make_train_step
from bench.common import random_tasks

hidden = int(sys.argv[1]) if len(sys.argv) > 1 else 64
c = base_config()
c.method, c.ways, c.shots, c.queries, c.meta_batch_size = "protonet", 5, 1, 15, 1
c.model.name, c.model.hidden, c.image_size = "resnet12", hidden, 84
m = build_method(c); tx = outer_optimizer(c)
params = m.init(jax.random.key(0), jnp.zeros((1, 84, 84, 3)))
state = init_state(params, tx, ema=False)
step = jax.jit(make_train_step(m, tx, meta_batch_size=1), donate_argnums=0)
t = random_tasks(jax.random.key(1), tasks=1, n_way=5, k_shot=1, q_query=15, sorted_support=True)
t = jax.tree.map(lambda a: jnp.repeat(jax.image.resize(a, a.shape[:2] + (84, 84, 1), "nearest"), 3, -1) if a.ndim == 5 else a, t)
t0 = time.time(); compiled = step.lower(state, t).compile(); cs = time.time() - t0
times = []
for i in range(4):
    t0 = time.time(); state, metrics = compiled(state, t); jax.block_until_ready(metrics); times.append(time.time() - t0)
print(json.dumps(dict(model="resnet12", widths=list(m.model.widths), method="protonet", episode="5w1s15q 84x84x3",
    compile_s=round(cs, 1), step_s=[round(x, 2) for x in times], median_s=round(sorted(times[1:])[1], 2),
    params_m=round(sum(p.size for p in jax.tree.leaves(params)) / 1e6, 2), load=os.getloadavg()[0])))
