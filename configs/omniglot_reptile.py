"""Reptile on Omniglot (Nichol, Achiam & Schulman 2018), conv4.

Run:       python train.py --config configs/omniglot_reptile.py:5w1s --workdir runs/omniglot_reptile_5w1s
Run time:  published schedule 100,000 meta-steps: GPU about 1-2 h; CPU (2 cores): shorten with --config.total_steps.
Expected:  published 5w1s 95.39, 5w5s 98.90, 20w1s 88.14, 20w5s 96.65 without transduction (each query
           classified with the support set alone: --config.transductive=False, or evaluate.py --notransductive);
           97.68, 99.48, 89.43, 97.12 with it (the default; Nichol et al. 2018, Table 1).
           fewjax measured: see the README "Results" table.
Presets:   5w1s, 5w5s, 20w1s, 20w5s. As the paper: inner Adam (beta1 = 0) at lr 1e-3, 5 inner steps (train),
           50 (test), meta-batch 5, outer SGD with step size 1.0 annealed linearly to 0. Unlike the paper's
           10-example inner mini-batches, fewjax's inner steps are full-batch on support + query (see
           fewjax.reptile_grad), with queries chosen so that a training task holds 10 examples per class at 5-way.
           lake: Lake et al.'s one-shot challenge (train on the background alphabets only; test 20-way 1-shot
           within one evaluation alphabet, support and query by different drawers; fewjax.experiment.config.lake_protocol).
"""
from fewjax.experiment.config import omniglot_presets


@omniglot_presets("omniglot_reptile.py")
def get_config(c, preset, ways, shots):
    c.method = "reptile"
    c.queries = 10 - shots if ways == 5 else 1
    c.meta_batch_size = 5
    c.inner_optimizer, c.inner_lr, c.inner_steps, c.eval_inner_steps = "adam", 1e-3, 5, 50
    c.optim.name, c.optim.lr, c.optim.schedule = "sgd", 1.0, "linear"
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 100000, 100, 2000, 2000
    c.val_episodes = 200
    return c
