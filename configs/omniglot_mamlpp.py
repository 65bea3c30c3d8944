"""MAML++ on Omniglot (Antoniou, Edwards & Storkey 2019), Vinyals split, 28x28, rotations as classes, conv4.

Run:       python train.py --config configs/omniglot_mamlpp.py:5w1s --workdir runs/omniglot_mamlpp_5w1s
Run time:  the published schedule is 100 epochs of 500 meta-steps (50,000) of 8 tasks with 5 second-order inner
           steps: GPU hours; on the 2-core CPU days. Shorten it with --config.total_steps and, to keep the
           annealing in proportion, --config.mamlpp.epoch_steps (total_steps / 100).
Expected:  published 5w1s 99.47 +- 0.05, 5w5s 99.93 +- 0.09, 20w1s 97.65 +- 0.05, 20w5s 99.33 +- 0.03
           (Antoniou et al. 2019); fewjax measured: see the README (MAML++ ablation).
Presets:   5w1s, 5w5s, 20w1s, 20w5s with the reference code's settings (github.com/AntreasAntoniou/
           HowToTrainYourMAMLPytorch, experiment_config/omniglot_maml++-omniglot_*): meta-batch 8, 5 inner steps at a
           learned per-layer, per-step rate starting at 0.1 (5 at test), per-step batch-norm weights, multi-step
           loss annealed over the first 10 epochs, second order throughout (the reference's
           first_order_to_second_order_epoch=-1; --config.mamlpp.first_order_epochs=N turns derivative-order
           annealing on), Adam 1e-3 cosine-annealed to 1e-5, max-pooling conv4 with 64 filters. One query per class
           in training, as the reference (num_target_samples=1); 15 per class at validation and test, the usual
           protocol. lake: Lake et al.'s one-shot challenge (fewjax.experiment.config.lake_protocol).
           Switches (each alone: plain MAML is every one off, with optim.schedule=constant):
           --config.mamlpp.multi_step_loss, .per_step_bn, .lslr, .first_order_epochs, --config.optim.schedule.
"""
from fewjax.experiment.config import omniglot_presets

PUBLISHED = {"5w1s": "99.47 +- 0.05", "5w5s": "99.93 +- 0.09", "20w1s": "97.65 +- 0.05", "20w5s": "99.33 +- 0.03"}


@omniglot_presets("omniglot_mamlpp.py")
def get_config(c, preset, ways, shots):
    c.method = "mamlpp"
    if preset in PUBLISHED:
        c.published = f"MAML++ {PUBLISHED[preset]} (Antoniou et al. 2019, 50,000 steps)"
        c.published_setting = preset
    c.queries = 1
    c.meta_batch_size, c.inner_steps, c.eval_inner_steps, c.inner_lr = 8, 5, 5, 0.1
    c.optim.lr, c.optim.schedule, c.optim.min_lr = 1e-3, "cosine", 1e-5
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 50000, 100, 500, 500
    c.mamlpp.msl_epochs, c.mamlpp.epoch_steps, c.mamlpp.first_order_epochs = 10, 500, 0
    c.val_episodes = 200
    return c
