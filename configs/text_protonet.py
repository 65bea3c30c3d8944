"""Prototypical networks on a pretrained sentence encoder (all-MiniLM-L6-v2): CLINC150 intents, FewRel relations.

Run:       python train.py --config configs/text_protonet.py:clinc150_5w1s --workdir runs/text_protonet_clinc150_5w1s \
               --config.text.model=../shared/models/all-MiniLM-L6-v2 --config.data_dir=../shared/data
           (text.model: a local folder or a Hub name such as sentence-transformers/all-MiniLM-L6-v2)
           Zero-step baseline (the frozen pretrained encoder): add --config.total_steps=0.
Run time:  CPU (2 cores, shared): 200 steps of 4 episodes ~10-15 min for CLINC150 (32 tokens), 2-3x that for
           FewRel (64 tokens); 600 test episodes of 5w1s with 15 queries ~8 min. A GPU takes seconds.
Expected:  RESULTS_PROTONET
Presets:   clinc150_5w1s, clinc150_5w5s, fewrel_5w1s, fewrel_5w5s. Cosine distance on L2-normalised mean-pooled
           embeddings with temperature 0.1, Adam 2e-5 (the usual lr for fine-tuning a sentence encoder), 5-way
           training episodes with 5 queries per class, meta-batch 4.
"""
from fewjax.train.text import text_preset_config


def get_config(preset: str = "clinc150_5w1s"):
    c = text_preset_config(preset, config_file="text_protonet.py")
    c.method = "protonet"
    return c
