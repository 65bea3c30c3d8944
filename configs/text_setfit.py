"""SetFit-style few-shot text classification (Tunstall et al. 2022) on a pretrained sentence encoder
(all-MiniLM-L6-v2): per episode, contrastive fine-tuning on pairs of the support set, then a logistic-regression head.

Run:       python train.py --config configs/text_setfit.py:clinc150_5w1s --workdir runs/text_setfit_clinc150_5w1s \
               --config.text.model=../shared/models/all-MiniLM-L6-v2 --config.data_dir=../shared/data
           (total_steps is 0: nothing is meta-trained; the run saves the pretrained encoder and evaluates.)
           Meta-trained variant (ProtoNet episodes on the training classes first): add --config.total_steps=200.
           Nearest-class-mean head instead of logistic regression: --config.text.setfit_head=prototype.
Run time:  each test episode takes eval_inner_steps forward-backward passes of the support set through the
           encoder plus one L-BFGS fit of the head: see bench/text_fewshot.py (bench/results/text_fewshot.jsonl).
Expected:  bench/text_fewshot.py (README text table): CLINC150 and FewRel, beside frozen and meta-trained
           ProtoNet on the same episodes.
Presets:   clinc150_5w1s, clinc150_5w5s, fewrel_5w1s, fewrel_5w5s. The library's defaults where they carry over:
           encoder lr 2e-5 (inner_lr), Adam, 20 steps (eval_inner_steps; the library's 20 pair-sampling
           iterations make 13 to 63 steps of 16 pairs for these support sets, where each of ours scores every
           pair), logistic regression with C = 1 (text.head_l2 = 1).
"""
from fewjax.experiment.config import text_preset_config


def get_config(preset: str = "clinc150_5w1s"):
    c = text_preset_config(preset, config_file="text_setfit.py")
    c.method = "setfit"
    c.total_steps = 0
    c.eval_inner_steps, c.inner_lr = 20, 2e-5
    c.text.setfit_head, c.text.head_l2 = "logistic", 1.0
    return c
