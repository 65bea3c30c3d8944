"""Prototypical networks on Omniglot (Snell et al. 2017), Vinyals split, 28x28, rotations as classes.

Run:       python train.py --config configs/omniglot_protonet.py:5w1s --workdir runs/omniglot_protonet_5w1s
Run time:  the published schedule: up to 20,000 episodes (by then the halved-every-2000 learning rate is 1e-6), stopped
           early after 10 validations (5,000 episodes) without a new best, as Snell et al. stop on validation.
           CPU (2 cores): a few steps/s at 60-way, i.e. 1-2 h; GPU: minutes. Shorten with --config.total_steps.
Expected:  published 5w1s 98.8, 5w5s 99.7, 20w1s 96.0, 20w5s 98.9 (Snell et al. 2017);
           fewjax measured: see the README "Results" table (generated from runs/*/eval_test.json).
Presets:   quick (the README's first run: 5-way 1-shot test, 30-way training episodes, 300 steps: ~5 min on a
           2-core CPU), and 5w1s, 5w5s, 20w1s, 20w5s (the test setting). Training episodes are 60-way with 5 queries per class and
           the test shot count, one episode per step, Adam 1e-3 halved every 2000 episodes, as in the paper.
           lake: Lake et al.'s one-shot challenge (train on the background alphabets only; test 20-way 1-shot
           within one evaluation alphabet, support and query by different drawers; fewjax.experiment.config.lake_protocol).
"""
from fewjax.experiment.config import omniglot_presets


@omniglot_presets("omniglot_protonet.py", extra={"quick": (5, 1)})
def get_config(c, preset, ways, shots):
    c.method = "protonet"
    c.ways, c.queries = 60, 5  # training episodes; the preset sets the test episodes
    c.meta_batch_size = 1
    c.optim.lr, c.optim.schedule, c.optim.decay_every, c.optim.decay_rate = 1e-3, "step", 2000, 0.5
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 20000, 50, 500, 500
    c.early_stop_patience = 10
    if preset == "quick":
        c.ways = 30
        c.total_steps, c.eval_every, c.checkpoint_every, c.val_episodes = 300, 100, 100, 100
        c.early_stop_patience = 0
    return c
