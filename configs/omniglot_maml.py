"""MAML (second order) on Omniglot (Finn et al. 2017), Vinyals split, 28x28, rotations as classes, conv4.

Run:       python train.py --config configs/omniglot_maml.py:5w1s --workdir runs/omniglot_maml_5w1s
Run time:  published schedule 60,000 meta-steps: one H200 10.3 min at 5-way 1-shot (97 steps/s overall, measured
           2026-12-04: 97.71 ± 0.28 on 600 test episodes); CPU (2 cores) about 2.4 s/step at 5-way
           meta-batch 32 with the max-pool conv4 (1,000 steps: 40 min, 94.1% 5w1s), i.e. ~40 h for the full
           schedule (less with stride-2 convolutions): shorten it with --config.total_steps.
Expected:  published 5w1s 98.7, 5w5s 99.9, 20w1s 95.8, 20w5s 98.9 (Finn et al. 2017);
           fewjax measured: see the README "Results" table (generated from runs/*/eval_test.json).
Presets:   5w1s, 5w5s (1 inner step at lr 0.4, meta-batch 32; 3 steps at test), 20w1s, 20w5s (5 inner steps at
           lr 0.1, meta-batch 16; 5 at test). 15 query examples per class, Adam 1e-3. (Finn et al.'s code drew
           `shots` queries per class on Omniglot, in training and at test: the 15 here lower the meta-gradient's
           variance; `evaluate.py --queries 1` tests a 1-shot run their way.) Finn et al.'s Omniglot
           network: conv4 with stride-2 convolutions instead of max-pooling (`model.pool="stride"`; fewjax's MAML
           presets used max-pooling until 2026-12-03; the 1,000-step 94.11 record was trained so). First-order MAML:
           configs/omniglot_fomaml.py; Meta-SGD and ANIL: --config.method=metasgd / anil.
           lake: Lake et al.'s one-shot challenge (train on the background alphabets only; test 20-way 1-shot
           within one evaluation alphabet, support and query by different drawers; fewjax.experiment.config.lake_protocol).
"""
from fewjax.experiment.config import omniglot_presets


@omniglot_presets("omniglot_maml.py")
def get_config(c, preset, ways, shots, method: str = "maml"):
    c.method = method
    if ways == 5:
        c.meta_batch_size, c.inner_steps, c.inner_lr, c.eval_inner_steps = 32, 1, 0.4, 3
    else:
        c.meta_batch_size, c.inner_steps, c.inner_lr, c.eval_inner_steps = 16, 5, 0.1, 5
    c.optim.lr = 1e-3
    c.model.pool = "stride"
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 60000, 100, 1000, 1000
    c.val_episodes = 200
    return c
