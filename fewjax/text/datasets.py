"""Text datasets from a run's config: CLINC150, FewRel or the user's CSV / JSONL file, tokenised for the encoder.

`make_text_source(config, split)` is what `fewjax.experiment.data.make_source` calls for a text dataset. Sources
are cached per process (tokenising CLINC150 takes seconds).

Example:
    >>> from fewjax.experiment.config import base_config                               # doctest: +SKIP
    >>> c = base_config(); c.dataset = "clinc150"                                       # doctest: +SKIP
    >>> c.text.model = "../shared/models/all-MiniLM-L6-v2"; c.data_dir = "../shared/data"  # doctest: +SKIP
    >>> make_text_source(c, "test").num_classes                                          # doctest: +SKIP
    50
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np

from fewjax.text import sources as ts
from fewjax.text.encoder import load_pretrained_cached

TEXT_DATASETS = ("clinc150", "fewrel", "text_file")
TEXT_FILE_FRACTIONS = (0.6, 0.2, 0.2)
"""dataset=text_file: the seeded share of the file's classes used for training, validation and test."""


def _text_dir(config) -> str | None:
    """`config.data_dir` (the folder holding clinc150/ and fewrel/, or its parent holding text/), else None:
    `$FEWJAX_DATA_DIR/text`."""
    if not config.data_dir:
        return None
    path = Path(config.data_dir).expanduser()
    if (path / "text").is_dir() and not (path / "clinc150").is_dir() and not (path / "fewrel").is_dir():
        path = path / "text"
    return str(path)


def make_text_source(config, split: str, data_path: str | os.PathLike | None = None):
    """The `fewjax.data.ArraySource` of token ids for `split` ("train", "val", "test").

    clinc150 / fewrel: the seeded class split of `fewjax.text` (`text.class_seed`). text_file: `config.data_dir`
    is a CSV / JSONL file whose classes are split `TEXT_FILE_FRACTIONS` by `text.class_seed`. With `data_path`
    (a CSV / JSONL file), every class in that file is a test class, read with `text.text_column/label_column`.
    `text.max_length` 0 picks the smallest bucket that fits the data. Sources are cached per process.
    """
    t = config.text
    max_length = int(t.max_length) or None
    if data_path is not None:
        return _file_source(str(t.model), str(data_path), t.text_column, t.label_column, max_length)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}: choose train, val or test.")
    if config.dataset == "text_file":
        if not config.data_dir or not Path(config.data_dir).is_file():
            raise FileNotFoundError(f"config.data_dir={config.data_dir!r}: dataset text_file needs data_dir=<a .csv, "
                                    ".tsv or .jsonl file> with columns text.text_column / text.label_column.")
        return _file_split(str(t.model), str(config.data_dir), t.text_column, t.label_column, max_length,
                           int(t.class_seed), split, int(max(config.ways, config.test_ways)))
    if config.dataset not in ("clinc150", "fewrel"):
        raise ValueError(f"config.dataset={config.dataset!r}: choose one of {TEXT_DATASETS}.")
    return _named_source(config.dataset, str(t.model), _text_dir(config), max_length, int(t.class_seed), split)


@functools.lru_cache(maxsize=16)
def _named_source(dataset, model, data_dir, max_length, seed, split):
    tok = load_pretrained_cached(model)[2]
    if dataset == "fewrel" and split == "val":
        # Offline FewRel has 16 relations (10 train, 0 val, 6 test): validation episodes come from the training
        # relations (their own seed), so checkpoint selection never sees a test relation.
        split = "train"
    if dataset == "clinc150":
        return ts.clinc150(split, tokenizer=tok, data_dir=data_dir, seed=seed, max_length=max_length)
    return ts.fewrel(split, tokenizer=tok, data_dir=data_dir, seed=seed, max_length=max_length)


@functools.lru_cache(maxsize=8)
def _file_source(model, path, text_column, label_column, max_length):
    return ts.text_file(path, tokenizer=load_pretrained_cached(model)[2], text_column=text_column, label_column=label_column,
                        max_length=max_length)


@functools.lru_cache(maxsize=8)
def _file_split(model, path, text_column, label_column, max_length, seed, split, ways):
    full = _file_source(model, path, text_column, label_column, max_length)
    n = full.num_classes
    sizes = [int(f * n) for f in TEXT_FILE_FRACTIONS]
    sizes[0] = n - sizes[1] - sizes[2]
    if min(sizes) < ways:
        raise ValueError(f"{path} has {n} classes: split {TEXT_FILE_FRACTIONS} into train/val/test that gives "
                         f"{tuple(sizes)}, fewer than ways={ways} in some split. Use a file with at least {5 * ways} "
                         "classes, or evaluate on it with evaluate.py --data FILE instead.")
    names = ts.split_classes(full.class_names, sizes=sizes, seed=seed)[split]
    index = {name: i for i, name in enumerate(full.class_names)}
    return full.subset([index[name] for name in names])


def label_text(class_name: str) -> str:
    """The words of a class's name, as one more support example: FewRel's "P931:place served by transport hub"
    -> "place served by transport hub" (its Wikidata id dropped), CLINC150's "pin_change" -> "pin change".

    Example:
        >>> label_text("P931:place served by transport hub"), label_text("pin_change"), label_text("reminder:work")
        ('place served by transport hub', 'pin change', 'reminder:work')
    """
    return re.sub(r"^P\d+:", "", class_name).replace("_", " ").strip()


def label_name_examples(config, source) -> np.ndarray:
    """Token ids `[num_classes, L]` of every class's `label_text`, padded or cut to the source's length L.

    Class names without a letter (labels 0, 1, 2 of a user's file) carry no meaning to embed: an error.
    """
    wordless = [n for n in source.class_names if not any(ch.isalpha() for ch in label_text(n))]
    if wordless:
        raise ValueError(f"config.text.label_names=True embeds each class's name as one more support example, but "
                         f"{len(wordless)} class names have no words (e.g. {wordless[0]!r}); turn label_names off "
                         "(--config.text.label_names=False), or label the data with names.")
    tok = load_pretrained_cached(str(config.text.model))[2]
    return tok([label_text(n) for n in source.class_names], max_length=source.example_shape[-1]).astype(source.dtype)
