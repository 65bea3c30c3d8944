"""MAML (second order) on miniImageNet (Finn et al. 2017), 84x84 RGB, conv4 with 32 filters and max-pooling.

Run:       python train.py --config configs/miniimagenet_maml.py:5w1s --config.data_dir=ROOT
           --workdir runs/miniimagenet_maml_5w1s
           ROOT is your copy of miniImageNet in Ravi & Larochelle's split, ROOT/{train,val,test}/<class>/<image>
           (64, 16 and 20 classes of 600 images; any image size, resized to 84x84); it cannot be downloaded here.
           First-order MAML: add --config.method=fomaml.
Run time:  not measured yet. The published schedule is 60,000 meta-steps of 4 tasks (1-shot) or 2 tasks (5-shot),
           each 5 second-order inner steps on 84x84 images: estimated at several seconds a step on a 2-core CPU
           (days: shorten it with --config.total_steps), a few hours on a GPU.
Expected:  published 5w1s 48.70 +- 1.84, 5w5s 63.11 +- 0.92 (Finn et al. 2017; first-order MAML 48.07 +- 1.75,
           63.15 +- 0.91). evaluate.py prints the preset's published result beside the measured accuracy
           (config.published).
Presets:   5w1s, 5w5s: as Finn et al., 5-way episodes with 15 queries per class, conv4 with 32 filters (batch norm,
           2x2 max-pooling), 5 inner SGD steps at lr 0.01 in training and 10 at test, meta-batch 4 (1-shot) or 2
           (5-shot), Adam 1e-3, no augmentation; the best checkpoint by validation accuracy is tested.
"""
from fewjax.experiment.config import base_config, preset

PRESETS = {"5w1s": (1, 4), "5w5s": (5, 2)}
"""Preset -> (shots, meta-batch size)."""
PUBLISHED = {1: "5-way 1-shot: MAML conv4 48.70 +- 1.84 (Finn et al. 2017; first-order 48.07 +- 1.75)",
             5: "5-way 5-shot: MAML conv4 63.11 +- 0.92 (Finn et al. 2017; first-order 63.15 +- 0.91)"}


def get_config(name: str = "5w1s"):
    shots, meta_batch = preset(name, PRESETS, "miniimagenet_maml.py")
    c = base_config()
    c.method, c.dataset, c.image_size = "maml", "image_folder", 84
    c.model.name, c.model.hidden, c.model.pool = "conv4", 32, "max"
    c.ways = c.test_ways = 5
    c.shots = c.test_shots = shots
    c.queries = c.test_queries = 15
    c.meta_batch_size = meta_batch
    c.inner_steps, c.inner_lr, c.eval_inner_steps = 5, 0.01, 10
    c.optim.lr = 1e-3
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 60000, 100, 1000, 1000
    c.val_episodes, c.test_episodes, c.eval_batch_size = 200, 600, 25
    c.published, c.published_setting = PUBLISHED[shots], f"5w{shots}s"
    return c
