"""Tokenizer: stored padding reset, fixed bucket lengths, int32 ids, truncation keeps [SEP]."""
from __future__ import annotations


import numpy as np
import pytest

from fewjax.text import Tokenizer, as_tokenizer, bucket_length
from tests.shared import SHARED

MODEL = SHARED / "models" / "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def tok():
    if not (MODEL / "tokenizer.json").is_file():
        pytest.skip(f"{MODEL} not available")
    return Tokenizer.from_file(MODEL)


def test_matches_reference_ids(tok):
    ref = np.load(MODEL / "reference_outputs.npz")
    ids = tok(list(ref["sentences"]), max_length=70)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, ref["input_ids"])


def test_bucket_is_smallest_that_fits(tok):
    short = tok(["hello world"])  # [CLS] hello world [SEP]: 4 tokens, not the stored 128
    assert short.shape == (1, 32)
    np.testing.assert_array_equal(short[0, :4], [101, 7592, 2088, 102])
    assert (short[0, 4:] == tok.pad_id).all() and tok.pad_id == 0
    long = " ".join(["word"] * 40)
    assert tok(["hi", long]).shape == (2, 64)
    assert tok(["hi", long], buckets=(16, 48)).shape == (2, 48)


def test_truncation_keeps_sep_and_fixed_length(tok):
    text = " ".join(["word"] * 600)
    ids = tok([text])  # longer than the largest bucket, BERT's 512 positions
    assert ids.shape == (1, 512) and ids[0, -1] == 102 and ids[0, 0] == 101
    assert tok([" ".join(["word"] * 300)]).shape == (1, 512)
    ids = tok([text, "hi"], max_length=10)
    assert ids.shape == (2, 10) and ids[0, -1] == 102
    assert tok.token_lengths([text])[0] == 602  # lengths are measured without truncation


def test_bad_inputs_raise(tok):
    with pytest.raises(ValueError, match="not one string"):
        tok("hello")
    with pytest.raises(ValueError, match="empty"):
        tok([])
    with pytest.raises(ValueError, match="max_length=1"):
        tok(["a"], max_length=1)
    with pytest.raises(ValueError, match="buckets"):
        bucket_length(3, ())
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_file(MODEL / "nope")
    with pytest.raises(ValueError, match="fewjax.text.Tokenizer"):
        as_tokenizer(3)


def test_decode_round_trip(tok):
    assert tok.decode(tok(["Hello, World!"])[0]) == "hello, world!"
    assert tok.vocab()[101] == "[CLS]" and len(tok.vocab()) == tok.vocab_size == 30522
