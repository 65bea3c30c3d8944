"""Text few-shot data: fast tokenisation to fixed buckets, class sources, EDA augmentation.

Example:
    >>> from fewjax.text import Tokenizer, clinc150                                        # doctest: +SKIP
    >>> tok = Tokenizer.from_file("../shared/models/all-MiniLM-L6-v2")                    # doctest: +SKIP
    >>> src = clinc150("train", tokenizer=tok, data_dir="../shared/data/text")            # doctest: +SKIP
"""
from __future__ import annotations

from fewjax.text import augment
from fewjax.text.augment import EDATables, eda, eda_augment, eda_tables
from fewjax.text.sources import (
    ENTITY_MARKERS,
    clinc150,
    clinc150_texts,
    fewrel,
    fewrel_texts,
    mark_entities,
    split_classes,
    text_data_dir,
    text_file,
    text_file_texts,
)
from fewjax.models.tokenizer import DEFAULT_BUCKETS, Tokenizer, as_tokenizer, bucket_length

__all__ = [
    "DEFAULT_BUCKETS",
    "EDATables",
    "ENTITY_MARKERS",
    "Tokenizer",
    "as_tokenizer",
    "augment",
    "bucket_length",
    "clinc150",
    "clinc150_texts",
    "eda",
    "eda_augment",
    "eda_tables",
    "fewrel",
    "fewrel_texts",
    "mark_entities",
    "split_classes",
    "text_data_dir",
    "text_file",
    "text_file_texts",
]
