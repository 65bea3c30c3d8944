"""MAML family on a pretrained sentence encoder (all-MiniLM-L6-v2): ANIL (second order, head only) by default,
first-order MAML of the whole encoder with --config.method=fomaml.

Run:       python train.py --config configs/text_maml.py:clinc150_5w1s --workdir runs/text_anil_clinc150_5w1s \
               --config.text.model=../shared/models/all-MiniLM-L6-v2 --config.data_dir=../shared/data
           FOMAML: add --config.method=fomaml (and --config.remat=True where activation memory is short).
Run time:  CPU (2 cores, shared, load ~8): ANIL costs about a ProtoNet step (the encoder runs once per task, the
           head adapts on cached features): ~4 s per step of 2 episodes, ~30 min for 200 steps of 4. FOMAML runs
           the whole encoder forward and backward at each inner step: measured ~21 s per step of 2 episodes with
           3 inner steps at load ~12, i.e. hours for the default schedule on a CPU (use a GPU, or
           --config.total_steps=10); its evaluation adapts 22M weights per episode, one episode after the other.
Expected:  bench/text_fewshot.py, shortened CPU schedule (bench/results/text_fewshot.jsonl; 5 test
           queries per class). ANIL, 30 steps x 2 episodes: CLINC150 5w1s 96.0 +- 1.1 (frozen ProtoNet 94.7),
           FewRel 5w1s 77.1 +- 2.3 (frozen 64.7, 50 episodes). FOMAML, 10 steps x 2 episodes, 3 inner steps:
           CLINC150 5w1s 95.4 +- 1.2 (430 s of training at load ~12).
Presets:   clinc150_5w1s, clinc150_5w5s, fewrel_5w1s, fewrel_5w5s. Linear head over ways=5 classes initialised at
           zero on L2-normalised mean-pooled features, logits scaled by text.logit_scale=10; inner SGD lr 0.5 for the
           head (x text.encoder_lr_scale=0.01 for the encoder under FOMAML), 5 inner steps in training, 10 at test;
           outer Adam 2e-5, meta-batch 4.
"""
from fewjax.experiment.config import text_preset_config


def get_config(preset: str = "clinc150_5w1s"):
    c = text_preset_config(preset, config_file="text_maml.py")
    c.method = "anil"
    c.inner_steps, c.eval_inner_steps, c.inner_lr, c.inner_optimizer = 5, 10, 0.5, "sgd"
    c.text.logit_scale, c.text.encoder_lr_scale = 10.0, 0.01
    return c
