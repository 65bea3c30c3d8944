"""Prompt tuning (Lester et al. 2021) of the frozen sentence encoder (all-MiniLM-L6-v2), from a vocabulary, random or
meta-learned (MetaPrompting, Hou et al. 2022) start: 8 soft prompt vectors after [CLS], tuned per episode with a
nearest-class-mean head on the support set.

Run:       python train.py --config configs/text_prompt.py:clinc150_5w1s --workdir runs/text_prompt_clinc150_5w1s \
               --config.text.model=../shared/models/all-MiniLM-L6-v2 --config.data_dir=../shared/data
           (total_steps is 0: the prompt starts from vocabulary embeddings; the run saves it and evaluates.)
           Random start: --config.text.prompt_init=random. Meta-learned start (first-order MAML of the prompt over
           the training classes): --config.total_steps=200.
Run time:  each test episode takes eval_inner_steps forward-backward passes of the support set through the frozen
           encoder; a meta-training step inner_steps + 1 per episode: see bench/text_fewshot.py.
Expected:  bench/text_fewshot.py (README text table), beside frozen ProtoNet on the same episodes.
Presets:   clinc150_5w1s, clinc150_5w5s, fewrel_5w1s, fewrel_5w5s. Adam at 1e-3 for prompt and head together
           (inner_lr), 5 inner steps in meta-training, 10 per test episode, logits 10 * cosine-like scores
           (text.logit_scale); the outer Adam at 1e-3 (only the prompt is meta-learned).
"""
from fewjax.experiment.config import text_preset_config


def get_config(preset: str = "clinc150_5w1s"):
    c = text_preset_config(preset, config_file="text_prompt.py")
    c.method = "prompt"
    c.total_steps = 0
    c.inner_steps, c.eval_inner_steps, c.inner_lr, c.inner_optimizer = 5, 10, 1e-3, "adam"
    c.optim.lr = 1e-3
    c.text.prompt_length, c.text.prompt_init = 8, "vocab"
    return c
