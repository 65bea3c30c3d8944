"""Prototypical networks on a pretrained sentence encoder (all-MiniLM-L6-v2): CLINC150 intents, FewRel relations.

Run:       python train.py --config configs/text_protonet.py:clinc150_5w1s --workdir runs/text_protonet_clinc150_5w1s \
               --config.text.model=../shared/models/all-MiniLM-L6-v2 --config.data_dir=../shared/data
           (text.model: a local folder or a Hub name such as sentence-transformers/all-MiniLM-L6-v2)
           Zero-step baseline (the frozen pretrained encoder): add --config.total_steps=0.
Run time:  CPU (2 cores, shared, load ~6): ~3.7 s per step of 2 episodes on CLINC150 (32 tokens), so ~25 min
           for the default 200 steps of 4; FewRel (64 tokens) about the same per step with 5 queries; 600 test
           episodes of 5w1s with 15 queries ~12 min. Use --config.total_steps=30 for a quick run.
Expected:  bench/text_fewshot.py, shortened CPU schedule (30 steps x 2 episodes, 5 test queries per
           class; bench/results/text_fewshot.jsonl). CLINC150 5w1s (100 episodes): frozen 94.7 +- 1.2, meta-trained
           95.9 +- 1.1; FewRel 5w1s (50 episodes): frozen 64.7 +- 2.6, meta-trained 77.4 +- 2.3;
           CLINC150 5w5s (50 episodes): frozen 98.6 +- 0.7, meta-trained 98.6 +- 0.7
           (-0.1: at the ceiling in 30 steps).
Presets:   clinc150_5w1s, clinc150_5w5s, fewrel_5w1s, fewrel_5w5s. Cosine distance on L2-normalised mean-pooled
           embeddings with temperature 0.1, Adam 2e-5 (the usual lr for fine-tuning a sentence encoder), 5-way
           training episodes with 5 queries per class, meta-batch 4.
"""
from fewjax.experiment.config import text_preset_config


def get_config(preset: str = "clinc150_5w1s"):
    c = text_preset_config(preset, config_file="text_protonet.py")
    c.method = "protonet"
    return c
