"""MAML family on a pretrained sentence encoder (all-MiniLM-L6-v2): ANIL (second order, head only) by default,
first-order MAML of the whole encoder with --config.method=fomaml.

Run:       python train.py --config configs/text_maml.py:clinc150_5w1s --workdir runs/text_anil_clinc150_5w1s \
               --config.text.model=../shared/models/all-MiniLM-L6-v2 --config.data_dir=../shared/data
           FOMAML: add --config.method=fomaml (and --config.remat=True where activation memory is short).
Run time:  CPU (2 cores, shared): ANIL costs about a ProtoNet step (the encoder runs once per task, the head
           adapts on cached features): ~10-15 min for 200 steps on CLINC150. FOMAML runs the whole encoder
           forward and backward at each of its 5 inner steps: ~5x longer; its evaluation adapts 22M weights per
           episode (episodes go one after the other).
Expected:  RESULTS_MAML
Presets:   clinc150_5w1s, clinc150_5w5s, fewrel_5w1s, fewrel_5w5s. Linear head over ways=5 classes initialised at
           zero on L2-normalised mean-pooled features, logits scaled by text.logit_scale=10; inner SGD lr 0.5 for the
           head (x text.encoder_lr_scale=0.01 for the encoder under FOMAML), 5 inner steps in training, 10 at test;
           outer Adam 2e-5, meta-batch 4.
"""
from fewjax.train.text import text_preset_config


def get_config(preset: str = "clinc150_5w1s"):
    c = text_preset_config(preset, config_file="text_maml.py")
    c.method = "anil"
    c.inner_steps, c.eval_inner_steps, c.inner_lr, c.inner_optimizer = 5, 10, 0.5, "sgd"
    c.text.logit_scale, c.text.encoder_lr_scale = 10.0, 0.01
    return c
