"""Fine-tuning baseline (as the Hugging Face Trainer does it, per episode): the pretrained encoder plus a fresh zero
linear head are fine-tuned on each test episode's support set, then scored on its query set. No meta-training.

Run:       python train.py --config configs/text_finetune.py:clinc150_5w1s --workdir runs/text_finetune_clinc150_5w1s \
               --config.text.model=../shared/models/all-MiniLM-L6-v2 --config.data_dir=../shared/data
           (total_steps is 0: the run saves the pretrained encoder as its checkpoint and evaluates.)
           L2-SP (pretrained weights as the prior's mean): add --config.text.l2sp=0.01.
Run time:  CPU (2 cores, shared, load ~10): each test episode takes 10 Adam steps over the whole encoder, ~3.7 s
           an episode for 5w1s on CLINC150: ~40 min for 600 episodes (--config.test_episodes=100 for a quick run).
Expected:  bench/text_fewshot.py (bench/results/text_fewshot.jsonl): CLINC150 5w1s, 100 episodes with 5
           queries per class: 95.4 +- 1.2 (frozen ProtoNet 94.7), 372 s of evaluation at load ~10.
Presets:   clinc150_5w1s, clinc150_5w5s, fewrel_5w1s, fewrel_5w5s. Adam, head lr 1e-2 (inner_lr), encoder lr 1e-4
           (inner_lr x text.encoder_lr_scale), 10 steps (eval_inner_steps) on the support set, logits scaled by 10.
"""
from fewjax.experiment.config import text_preset_config


def get_config(preset: str = "clinc150_5w1s"):
    c = text_preset_config(preset, config_file="text_finetune.py")
    c.method = "finetune"
    c.total_steps = 0
    c.eval_inner_steps, c.inner_lr = 10, 1e-2
    c.text.logit_scale, c.text.encoder_lr_scale, c.text.l2sp = 10.0, 0.01, 0.0
    return c
