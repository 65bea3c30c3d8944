"""Prototypical networks on miniImageNet (Snell et al. 2017), 84x84 RGB, conv4 (64 filters) or ResNet-12.

Run:       python train.py --config configs/miniimagenet_protonet.py:5w1s --config.data_dir=ROOT
           --workdir runs/miniimagenet_protonet_5w1s
           ROOT is your copy of miniImageNet in Ravi & Larochelle's split, ROOT/{train,val,test}/<class>/<image>
           (64, 16 and 20 classes of 600 images; any image size, resized to 84x84); it cannot be downloaded here.
           A flat ROOT/<class>/<image> is split 64/16/20% by a seeded partition instead, which is not the
           benchmark's split.
Run time:  not measured yet (estimates from the work per step). Up to 20,000 episodes, stopped early after 10
           validations (5,000 episodes) without a new best. conv4: a 30-way 1-shot episode is 480 images of 84x84,
           about 0.3 TFLOP a step: several seconds on a 2-core CPU (one to two days; shorten with
           --config.total_steps), minutes to an hour on a GPU. resnet12: about 10x the work a step: a GPU run.
           The 38,400 training images take about 0.8 GB of memory as uint8.
Expected:  published 5w1s 49.42 +- 0.78, 5w5s 68.20 +- 0.66 (Snell et al. 2017, conv4, 600 test episodes). ResNet-12
           reference point: MetaOptNet-SVM 62.64 +- 0.61 / 78.63 +- 0.46 (Lee et al. 2019: ResNet-12 with an SVM
           head, not a ProtoNet, and DropBlock, which fewjax's ResNet-12 leaves out).
           evaluate.py prints the preset's published result beside the measured accuracy (config.published).
Presets:   5w1s, 5w5s: conv4 with 64 filters, as Snell et al.: training episodes 30-way (1-shot) and 20-way
           (5-shot) with the test shot count and 15 queries per class, one episode per step, Adam 1e-3 halved every
           2000 episodes, no augmentation; test episodes 5-way, 15 queries per class.
           resnet12_5w1s, resnet12_5w5s: model.name=resnet12 (64-160-320-640, flattened 5x5x640 features), 5-way
           training episodes with the test shot count and 6 queries per class, 8 episodes per step, Adam 1e-3
           halved every 2000 steps, and MetaOptNet's augmentation: shifts of up to 8 pixels (augment.affine with
           the shift only), horizontal flips and colour jitter 0.4 (augment.flip, augment.color_jitter).
           Other augmentations: --config.augment.resized_crop=True (--config.augment.crop_min_scale=0.08).
"""
from fewjax.experiment.config import base_config, preset

PRESETS = {"5w1s": ("conv4", 1), "5w5s": ("conv4", 5), "resnet12_5w1s": ("resnet12", 1),
           "resnet12_5w5s": ("resnet12", 5)}
PUBLISHED = {
    ("conv4", 1): "5-way 1-shot: ProtoNet conv4 49.42 +- 0.78 (Snell et al. 2017)",
    ("conv4", 5): "5-way 5-shot: ProtoNet conv4 68.20 +- 0.66 (Snell et al. 2017)",
    ("resnet12", 1): "5-way 1-shot: MetaOptNet-SVM ResNet-12 62.64 +- 0.61 (Lee et al. 2019; an SVM head)",
    ("resnet12", 5): "5-way 5-shot: MetaOptNet-SVM ResNet-12 78.63 +- 0.46 (Lee et al. 2019; an SVM head)",
}


def get_config(name: str = "5w1s"):
    model, shots = preset(name, PRESETS, "miniimagenet_protonet.py")
    c = base_config()
    c.method, c.dataset, c.image_size = "protonet", "image_folder", 84
    c.model.name = model
    c.shots = c.test_shots = shots
    c.test_ways, c.test_queries = 5, 15
    c.optim.lr, c.optim.schedule, c.optim.decay_every, c.optim.decay_rate = 1e-3, "step", 2000, 0.5
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 20000, 50, 500, 500
    c.early_stop_patience = 10
    c.val_episodes, c.test_episodes, c.eval_batch_size = 200, 600, 25
    if model == "conv4":
        c.ways, c.queries, c.meta_batch_size = (30 if shots == 1 else 20), 15, 1
    else:
        c.ways, c.queries, c.meta_batch_size = 5, 6, 8
        c.augment.affine = True
        c.augment.max_rotation = c.augment.max_shear = c.augment.max_scale = 0.0
        c.augment.max_shift = 8.0
        c.augment.flip, c.augment.color_jitter = True, 0.4
    c.published, c.published_setting = PUBLISHED[model, shots], f"5w{shots}s"
    return c
