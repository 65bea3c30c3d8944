"""Text few-shot data: fast tokenisation to fixed buckets, class sources, EDA augmentation."""
from __future__ import annotations

from fewjax.text.tokenize import DEFAULT_BUCKETS, Tokenizer, as_tokenizer, bucket_length

__all__ = ["DEFAULT_BUCKETS", "Tokenizer", "as_tokenizer", "bucket_length"]
