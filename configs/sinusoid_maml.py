"""MAML on sinusoid regression (Finn et al. 2017, section 5.1): the task family that needs no files.

Run:       python train.py --config configs/sinusoid_maml.py:10shot --workdir runs/sinusoid_maml
Run time:  CPU (2 cores) ~1 min for the default 2000 steps; GPU: seconds.
Expected:  Finn et al. report MSE ~0.5 (10-shot, 1 step at test time, from their figure);
           fewjax measured: see README "Results" (from runs/*/eval_test.json).
Presets:   5shot, 10shot, 20shot (K support and K query points per task).
"""
from fewjax.experiment.config import base_config
from fewjax.experiment.config import preset as preset_setting


def get_config(preset: str = "10shot"):
    shots = preset_setting(preset, {"5shot": 5, "10shot": 10, "20shot": 20}, "sinusoid_maml.py")
    c = base_config()
    c.method, c.dataset = "maml", "sinusoid"
    c.model.name = "mlp"
    c.shots = c.test_shots = shots
    c.queries = c.test_queries = shots
    c.ways = c.test_ways = 1
    c.meta_batch_size = 25
    c.inner_steps, c.inner_lr, c.eval_inner_steps = 1, 0.01, 1
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 2000, 100, 500, 500
    c.val_episodes, c.test_episodes = 100, 600
    return c
