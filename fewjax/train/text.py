"""Text few-shot training on a pretrained BERT-family encoder: config defaults, sources and methods.

The trainer reaches this module only for text datasets (`config.dataset` in `TEXT_DATASETS`).
"""
from __future__ import annotations

import ml_collections

TEXT_DATASETS = ("clinc150", "fewrel", "text_file")


def text_config() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.model = "sentence-transformers/all-MiniLM-L6-v2"  # a local folder or a Hugging Face Hub name
    t.pooling = "mean"  # mean or cls
    t.normalize = True  # L2-normalise sentence embeddings
    t.max_length = 0  # 0: the smallest bucket that fits the dataset
    t.text_column = "text"  # text_file: CSV / JSONL columns
    t.label_column = "label"
    t.class_seed = 0  # seed of the split of classes into train/val/test
    t.l2sp = 0.0  # finetune: weight of the L2-SP penalty towards the pretrained weights
    return t
