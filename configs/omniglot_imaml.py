"""iMAML on Omniglot (Rajeswaran, Finn, Kakade & Levine 2019), Vinyals split, 28x28, rotations as classes, conv4.

Run:       python train.py --config configs/omniglot_imaml.py:5w1s --workdir runs/omniglot_imaml_5w1s
Run time:  one meta-step costs about inner_steps + 2 * cg_steps forward-backward passes per task (16 + 10 at
           5-way), several times a first-order MAML step; the reference schedule (20,000 meta-steps) takes a few
           hours on one GPU and days on the 2-core CPU: shorten it with --config.total_steps. Memory does not
           grow with the inner steps (the implicit gradient keeps no tape of them).
Expected:  published 5w1s 99.50 +- 0.26, 20w1s 96.18 +- 0.36 (Rajeswaran et al. 2019, Hessian-free iMAML);
           fewjax measured: see the README "Results" table.
Presets:   5w1s, 5w5s (16 inner steps at lr 0.1, meta-batch 32), 20w1s, 20w5s (25 inner steps at lr 0.1,
           meta-batch 16); the same inner steps at test. lambda 2.0, 5 conjugate-gradient steps with damping 1.0
           (the reference code's cg_damping, github.com/aravindr93/imaml_dev), Adam 1e-3, 20,000 meta-steps.
           conv4 with stride-2 convolutions instead of max-pooling and batch norm on the batch's statistics, as
           in the reference code. 15 query examples per class (the reference samples K per class).
           lake: Lake et al.'s one-shot challenge (fewjax.experiment.config.lake_protocol).
           Keys: --config.imaml_lam, --config.imaml_cg_steps, --config.imaml_cg_damping (0: the exact implicit
           gradient (I + H/lam)^-1 g).
"""
from fewjax.experiment.config import omniglot_presets


@omniglot_presets("omniglot_imaml.py")
def get_config(c, preset, ways, shots):
    c.method = "imaml"
    c.model.pool = "stride"
    c.inner_lr = 0.1
    c.imaml_lam, c.imaml_cg_steps, c.imaml_cg_damping = 2.0, 5, 1.0
    if ways == 5:
        c.meta_batch_size, c.inner_steps, c.eval_inner_steps = 32, 16, 16
    else:
        c.meta_batch_size, c.inner_steps, c.eval_inner_steps = 16, 25, 25
    c.optim.lr = 1e-3
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 20000, 100, 1000, 1000
    c.val_episodes = 200
    return c
