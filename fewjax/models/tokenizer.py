"""Batched fast tokenisation to fixed, bucketed lengths.

A jitted step compiles once per input shape. Tokenising a whole data split at
once and padding every sentence to the same bucket length (the smallest of
`buckets` that holds the split's longest sentence, or a fixed `max_length`)
gives every episode the same `[N, L]` shape, so one compiled step serves them
all. Padding uses the tokenizer's pad id (0 for BERT), so the attention mask
is `ids != pad_id`.

Example:
    >>> tok = Tokenizer.from_file("../shared/models/all-MiniLM-L6-v2")   # doctest: +SKIP
    >>> ids = tok(["hello world", "a somewhat longer sentence"])         # doctest: +SKIP
    >>> ids.shape, ids.dtype                                             # doctest: +SKIP
    ((2, 32), dtype('int32'))
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_BUCKETS: tuple[int, ...] = (32, 64, 96, 128, 256, 512)
"""Up to BERT's 512 positions."""


def bucket_length(longest: int, buckets: Sequence[int]) -> int:
    """The smallest bucket `>= longest`, or the largest bucket (then sequences are truncated).

    Example:
        >>> bucket_length(40, (32, 64, 128)), bucket_length(500, (32, 64, 128))
        (64, 128)
    """
    buckets = sorted(int(b) for b in buckets)
    if not buckets or buckets[0] < 2:
        raise ValueError(f"buckets must be lengths >= 2 (room for [CLS] and [SEP]); got {buckets}.")
    for b in buckets:
        if b >= longest:
            return b
    return buckets[-1]


class Tokenizer:
    """A Hugging Face fast (Rust) tokenizer that returns int32 id arrays of fixed length.

    The padding and truncation stored in `tokenizer.json` are switched off
    (all-MiniLM-L6-v2 ships fixed padding to 128); length is decided per call.

    Attributes:
      raw: the underlying `tokenizers.Tokenizer`.
      pad_id: id used for padding (the `[PAD]` token; 0 for BERT vocabularies).
    """

    def __init__(self, raw, *, pad_token: str = "[PAD]"):
        raw.no_padding()
        raw.no_truncation()
        pad_id = raw.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"the tokenizer has no {pad_token!r} token; pass pad_token= with its padding token.")
        self.raw = raw
        self.pad_id = int(pad_id)
        self.pad_token = pad_token

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, pad_token: str = "[PAD]") -> "Tokenizer":
        """From a `tokenizer.json` file or a folder holding one."""
        from tokenizers import Tokenizer as RawTokenizer

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; pass a tokenizer.json (Hugging Face fast tokenizer) or its folder."
            )
        return cls(RawTokenizer.from_file(str(path)), pad_token=pad_token)

    @property
    def vocab_size(self) -> int:
        return self.raw.get_vocab_size(with_added_tokens=True)

    def vocab(self) -> list[str]:
        """Token strings indexed by id."""
        inv = {i: t for t, i in self.raw.get_vocab(with_added_tokens=True).items()}
        return [inv.get(i, "") for i in range(self.vocab_size)]

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Number of tokens of each text, special tokens included, without truncation."""
        return np.array([len(e.ids) for e in self.raw.encode_batch(list(texts))], dtype=np.int64)

    def with_special_tokens(self, tokens: Sequence[str]) -> "Tokenizer":
        """A copy in which `tokens` are single, never-split tokens (ids reused if already in the vocabulary).

        `self` is left as it is: a tokenizer shared with other datasets (a cached model's) keeps splitting them.
        """
        from tokenizers import Tokenizer as RawTokenizer

        raw = RawTokenizer.from_str(self.raw.to_str())
        raw.add_special_tokens(list(tokens))
        return type(self)(raw, pad_token=self.pad_token)

    def __call__(
        self,
        texts: Sequence[str],
        *,
        max_length: int | None = None,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
    ) -> np.ndarray:
        """Token ids `[N, L]` int32, special tokens added, right-padded with `pad_id`.

        `L = max_length` when given (longer texts truncated), else the smallest
        of `buckets` that holds the longest text (texts longer than the largest
        bucket are truncated to it).
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not one string; wrap it in a list.")
        texts = list(texts)
        if not texts:
            raise ValueError("texts is empty: nothing to tokenize.")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length={max_length} leaves no room for [CLS] and [SEP]; use >= 2.")
        limit = int(max_length) if max_length is not None else max(int(b) for b in buckets)
        self.raw.enable_truncation(limit)
        try:
            encs = self.raw.encode_batch(texts)
        finally:
            self.raw.no_truncation()
        longest = max(len(e.ids) for e in encs)
        length = int(max_length) if max_length is not None else bucket_length(longest, buckets)
        out = np.full((len(encs), length), self.pad_id, dtype=np.int32)
        for i, e in enumerate(encs):
            out[i, : len(e.ids)] = e.ids
        return out

    def decode(self, ids: Sequence[int] | np.ndarray, *, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1) if int(i) != self.pad_id]
        return self.raw.decode(ids, skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, pad_id={self.pad_id})"


def as_tokenizer(tokenizer: "Tokenizer | str | os.PathLike") -> Tokenizer:
    """A `Tokenizer` as is, or one loaded from a `tokenizer.json` path / model folder."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        return Tokenizer.from_file(tokenizer)
    raise ValueError(
        f"tokenizer must be a fewjax.text.Tokenizer or a path to tokenizer.json; got {type(tokenizer).__name__}."
    )
