"""Matching networks on Omniglot (Vinyals et al. 2016), cosine attention, no full-context embeddings, conv4.

Run:       python train.py --config configs/omniglot_matching.py:5w1s --workdir runs/omniglot_matching_5w1s
Run time:  CPU (2 cores): a few minutes per 1,000 episodes at 5-way meta-batch 32; GPU: seconds.
Expected:  published 5w1s 98.1, 5w5s 98.9, 20w1s 93.8, 20w5s 98.5 (Vinyals et al. 2016);
           fewjax measured: see the README "Results" table.
Presets:   5w1s, 5w5s, 20w1s, 20w5s: training episodes match the test setting; Adam 1e-3; attention
           temperature 0.1 (a softmax over raw cosines in [-1, 1] is too flat to train well).
           lake: Lake et al.'s one-shot challenge (train on the background alphabets only; test 20-way 1-shot
           within one evaluation alphabet, support and query by different drawers; fewjax.experiment.config.lake_protocol).
"""
from fewjax.experiment.config import omniglot_presets


@omniglot_presets("omniglot_matching.py")
def get_config(c, preset, ways, shots):
    c.method = "matching"
    c.queries = c.test_queries = 15 if ways == 5 else 5
    c.meta_batch_size = 32 if ways == 5 else 16
    c.temperature = 0.1
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 20000, 100, 1000, 1000
    return c
