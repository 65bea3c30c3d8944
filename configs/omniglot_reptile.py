"""Reptile on Omniglot (Nichol, Achiam & Schulman 2018), conv4.

Run:       python train.py --config configs/omniglot_reptile.py:5w1s --workdir runs/omniglot_reptile_5w1s
Run time:  published schedule 100,000 meta-steps: GPU about 1-2 h; CPU (2 cores): shorten with --config.total_steps.
Expected:  published 5w1s 95.39, 5w5s 98.90, 20w1s 88.14, 20w5s 96.65 without transduction (each query
           classified with the support set alone: --config.transductive=False, or evaluate.py --notransductive);
           97.68, 99.48, 89.43, 97.12 with it (the default; Nichol et al. 2018, Table 1).
           fewjax measured: see the README "Results" table.
Presets:   5w1s, 5w5s, 20w1s, 20w5s, as the paper's commands (README of openai/supervised-reptile): 10 examples per
           class in a training task (shots + queries), inner Adam (beta1 = 0) on mini-batches drawn without
           replacement (`inner_batch_size`): 5 steps of 10 at lr 1e-3 for 5-way, 10 steps of 20 at lr 5e-4 for
           20-way; meta-batch 5, outer SGD with step size 1.0 annealed linearly to 0 over 100,000 (5-way) or
           200,000 (20-way) meta-steps; 50 inner steps at test, and one query per class at test (the code's
           `evaluate` samples shots + 1 examples per class and, transductive, classifies the 5 or 20 queries in one
           batch: batch statistics of that size; with 15 queries per class the same 5w1s checkpoint scored 92.07 ±
           0.49 against 93.77 ± 0.41 on 3,000 one-query episodes). The inner Adam's state is carried from task to task
           and into the test episodes, as that code never resets it (`inner_state="carried"`;
           `bench/reptile_inner_state.py` measures it against a fresh state per task). Differences from that code:
           the tasks of a meta-step start from the same carried state, which then becomes their mean (the code ran
           them one after another). The test-time inner steps take mini-batches of 5 (5-way) or 10 (20-way) of the
           support set, as their --eval-batch (`eval_inner_batch_size`; runs trained before 2026-12-04 took them on
           the whole support set, and evaluate.py --inner_batch_size 0 still does). The network is theirs:
           conv4 with stride-2 convolutions instead of max-pooling (`model.pool="stride"`).
           lake: Lake et al.'s one-shot challenge (train on the background alphabets only; test 20-way 1-shot
           within one evaluation alphabet, support and query by different drawers; fewjax.experiment.config.lake_protocol).
"""
from fewjax.experiment.config import omniglot_presets


@omniglot_presets("omniglot_reptile.py")
def get_config(c, preset, ways, shots):
    c.method = "reptile"
    c.queries, c.test_queries = 10 - shots, 1
    c.meta_batch_size = 5
    c.model.pool = "stride"
    c.inner_optimizer, c.inner_state, c.eval_inner_steps = "adam", "carried", 50
    c.inner_lr, c.inner_steps, c.inner_batch_size = (1e-3, 5, 10) if ways == 5 else (5e-4, 10, 20)
    c.eval_inner_batch_size = 5 if ways == 5 else 10
    c.optim.name, c.optim.lr, c.optim.schedule = "sgd", 1.0, "linear"
    c.total_steps = 100000 if ways == 5 else 200000
    c.log_every, c.eval_every, c.checkpoint_every = 100, 2000, 2000
    c.val_episodes = 400  # of one query per class
    return c
