"""Distillation of a pretrained sentence encoder (all-MiniLM-L6-v2, 6 layers) into its first 2 layers, on few-shot
episodes (Hinton et al. 2015): the student's prototypical-network logits learn the teacher's.

Run:       python train.py --config configs/text_distill.py:clinc150_5w1s --workdir runs/text_distill_clinc150_5w1s \
               --config.text.model=../shared/models/all-MiniLM-L6-v2 --config.data_dir=../shared/data
Run time:  CPU (2 cores): a step runs the teacher and the student on 4 episodes; a few seconds per step.
Expected:  bench/text_fewshot.py --methods frozen,distill (bench/results/text_fewshot.jsonl): the distilled
           2-layer student against the frozen 6-layer teacher on the same test episodes; evaluation also reports
           the teacher's accuracy on them (`teacher_accuracy`).
Presets:   clinc150_5w1s, clinc150_5w5s, fewrel_5w1s, fewrel_5w5s (as configs/text_protonet.py); the student keeps
           text.student_layers layers; soft targets at text.distill_temperature 4, weight text.distill_alpha 0.9;
           Adam 1e-4 (a smaller network moves further from its start than the teacher's fine-tuning does).
"""
from fewjax.experiment.config import text_preset_config


def get_config(preset: str = "clinc150_5w1s"):
    c = text_preset_config(preset, config_file="text_distill.py")
    c.method = "distill"
    c.optim.lr = 1e-4
    return c
