"""Text class sources: CLINC150 intents, FewRel relations, any CSV / JSONL file.

Each `*_texts` function returns the raw triple `(texts, labels [N] int64,
class_names)`; the source functions tokenise it (one bucket length for the
whole split, see `fewjax.models.tokenizer`) and wrap it as a
`fewjax.data.ArraySource` of int32 token ids `[N, L]`, ready for
`fewjax.data.episodes(source, ways=, shots=, queries=, seed=)`.

Class splits (few-shot: train, val and test classes are disjoint). Class names
are sorted, permuted with `numpy.random.default_rng(seed)`, and cut in order
into `sizes = (train, val, test)`:

- CLINC150: the 150 in-scope intents, `sizes=(50, 50, 50)` by default; every
  intent keeps all 150 of its utterances (the file's train + val + test lists,
  in that order). The out-of-scope (`oos`) utterances are not used.
- FewRel: only the 16 relations of `val_wiki.json` are available offline
  (see data/text/SOURCE.md), `sizes=(10, 0, 6)` by default (no val classes:
  a 5-way val split would need 5 more relations); 700 instances each. Results
  are not comparable with published FewRel 1.0 numbers (64 train relations).

Data folder: `data_dir` if given, else `$FEWJAX_DATA_DIR/text`; it holds
`clinc150/data_full.json` and `fewrel/val_wiki.json`, `fewrel/pid2name.json`.

Example:
    >>> from fewjax.text import Tokenizer, sources
    >>> tok = Tokenizer.from_file("../shared/models/all-MiniLM-L6-v2")          # doctest: +SKIP
    >>> src = sources.clinc150("train", tokenizer=tok, data_dir="../shared/data/text")  # doctest: +SKIP
    >>> src.num_classes, src.example_shape                                       # doctest: +SKIP
    (50, (32,))
"""
from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from fewjax.data.sources import ArraySource
from fewjax.models.tokenizer import DEFAULT_BUCKETS, Tokenizer, as_tokenizer, bucket_length

SPLITS = ("train", "val", "test")
CLINC150_SIZES = (50, 50, 50)
FEWREL_SIZES = (10, 0, 6)
ENTITY_MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
"""Head start, head end, tail start, tail end, inserted as plain text by default."""


def text_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`data_dir`, else `$FEWJAX_DATA_DIR/text`; FileNotFoundError when neither exists."""
    if data_dir is None:
        root = os.environ.get("FEWJAX_DATA_DIR")
        if not root:
            raise FileNotFoundError(
                "no text data folder: pass data_dir= (holding clinc150/ and fewrel/) or set FEWJAX_DATA_DIR "
                "to a folder whose text/ subfolder holds them."
            )
        data_dir = Path(root) / "text"
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"text data folder {path} does not exist; pass data_dir= or set FEWJAX_DATA_DIR.")
    return path


def split_classes(names: Sequence[str], *, sizes: Sequence[int], seed: int) -> dict[str, list[str]]:
    """Seeded, disjoint `{"train", "val", "test"}` class lists of the given sizes.

    Example:
        >>> s = split_classes([f"c{i}" for i in range(6)], sizes=(3, 1, 2), seed=0)
        >>> [len(s[k]) for k in ("train", "val", "test")], sorted(sum(s.values(), [])) == [f"c{i}" for i in range(6)]
        ([3, 1, 2], True)
    """
    names = sorted(set(names))
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) > len(names):
        raise ValueError(
            f"sizes={sizes} must be three non-negative (train, val, test) class counts summing to at most "
            f"{len(names)} (the classes available)."
        )
    order = np.random.default_rng(seed).permutation(len(names))
    cuts = np.cumsum((0,) + sizes)
    return {split: [names[i] for i in order[cuts[j] : cuts[j + 1]]] for j, split in enumerate(SPLITS)}


def _check_split(split: str, classes: dict[str, list[str]], sizes) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}.")
    if not classes[split]:
        raise ValueError(f"split={split!r} has no classes with sizes={tuple(sizes)}; give it some, e.g. sizes=(8, 3, 5).")
    return classes[split]


def _read_json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is data_dir the folder holding {path.parent.name}/?")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _texts_source(texts, labels, names, tok: Tokenizer, *, max_length, buckets, all_texts=None,
                  warn_cut=False) -> ArraySource:
    """Token ids of `texts`; without `max_length`, the bucket fits the longest of `all_texts` (else of `texts`).

    Sizing the bucket on the whole data set (every split) gives train, val and
    test episodes the same shape, so one compiled step serves them all. `warn_cut`: warn when texts are longer
    than the length (a user's file; the built-in data sets document their cut).
    """
    lengths = tok.token_lengths(texts) if warn_cut or (max_length is None and all_texts is None) else None
    if max_length is None:
        longest = tok.token_lengths(all_texts).max() if all_texts is not None else lengths.max()
        max_length = bucket_length(int(longest), buckets)
    cut = int((lengths > max_length).sum()) if warn_cut else 0
    if cut:
        warnings.warn(f"{cut} of {len(texts)} texts are longer than {max_length} tokens and keep only their first "
                      f"{max_length} (the longest has {int(lengths.max())}); a longer max_length (evaluate.py "
                      "--max_length, config.text.max_length; 0 fits the data up to 512) keeps them whole.",
                      stacklevel=3)
    return ArraySource(tok(texts, max_length=max_length, buckets=buckets), labels, names)


def _clinc150_pairs(data_dir) -> list:
    data = _read_json(text_data_dir(data_dir) / "clinc150" / "data_full.json")
    return [p for part in ("train", "val", "test") for p in data[part]]


def clinc150_texts(
    split: str, *, data_dir: str | os.PathLike | None = None, seed: int = 0, sizes: Sequence[int] = CLINC150_SIZES
) -> tuple[list[str], np.ndarray, list[str]]:
    """CLINC150 utterances of the `split` intents: `(texts, labels, intent_names)`."""
    pairs = _clinc150_pairs(data_dir)
    classes = split_classes({intent for _, intent in pairs}, sizes=sizes, seed=seed)
    names = _check_split(split, classes, sizes)
    index = {n: i for i, n in enumerate(names)}
    kept = [(text, index[intent]) for text, intent in pairs if intent in index]
    return [t for t, _ in kept], np.array([y for _, y in kept], dtype=np.int64), names


def clinc150(
    split: str,
    *,
    tokenizer: Tokenizer | str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    sizes: Sequence[int] = CLINC150_SIZES,
    max_length: int | None = 32,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
) -> ArraySource:
    """CLINC150 intents of one class split as token ids (150 utterances per intent).

    `max_length=32` by default: with BERT WordPiece only 1 of the 22,500
    in-scope utterances is longer (33 tokens; it loses its last word piece).
    `max_length=None` picks the smallest bucket that holds the longest
    utterance of the whole file (64 here), the same for every split.
    """
    tok = as_tokenizer(tokenizer)
    texts, labels, names = clinc150_texts(split, data_dir=data_dir, seed=seed, sizes=sizes)
    all_texts = [t for t, _ in _clinc150_pairs(data_dir)] if max_length is None else None
    return _texts_source(texts, labels, names, tok, max_length=max_length, buckets=buckets, all_texts=all_texts)


def mark_entities(tokens: Sequence[str], head: Sequence[int], tail: Sequence[int], *, markers=ENTITY_MARKERS) -> str:
    """Words joined by spaces with markers around the head and tail spans (word indices).

    Example:
        >>> mark_entities(["Paris", "is", "in", "France"], [0], [3])
        '[E1] Paris [/E1] is in [E2] France [/E2]'
    """
    h0, h1 = min(head), max(head)
    t0, t1 = min(tail), max(tail)
    before = {h0: [markers[0]], t0: [markers[2]]}
    after = {h1: [markers[1]], t1: [markers[3]]}
    if h0 == t0:  # same start: open the longer span first so the markers nest
        before[h0] = [markers[0], markers[2]] if h1 >= t1 else [markers[2], markers[0]]
    if h1 == t1:
        after[h1] = [markers[3], markers[1]] if h0 <= t0 else [markers[1], markers[3]]
    out: list[str] = []
    for i, w in enumerate(tokens):
        out += before.get(i, []) + [w] + after.get(i, [])
    return " ".join(out)


def fewrel_texts(
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    sizes: Sequence[int] = FEWREL_SIZES,
    markers: Sequence[str] = ENTITY_MARKERS,
) -> tuple[list[str], np.ndarray, list[str]]:
    """FewRel (val_wiki) instances of the `split` relations with entity markers.

    Markers go around the first mention of the head and of the tail. Class
    names are `"<pid>:<relation name>"`, e.g. `"P177:crosses"`.
    """
    if len(markers) != 4:
        raise ValueError(f"markers must be 4 strings (head open, head close, tail open, tail close); got {markers}.")
    root = text_data_dir(data_dir) / "fewrel"
    data = _read_json(root / "val_wiki.json")
    pid2name = _read_json(root / "pid2name.json")
    classes = split_classes(list(data), sizes=sizes, seed=seed)
    pids = _check_split(split, classes, sizes)
    texts, labels = [], []
    for y, pid in enumerate(pids):
        for inst in data[pid]:
            texts.append(mark_entities(inst["tokens"], inst["h"][2][0], inst["t"][2][0], markers=markers))
            labels.append(y)
    names = [f"{p}:{pid2name[p][0]}" if p in pid2name else p for p in pids]
    return texts, np.array(labels, dtype=np.int64), names


def fewrel(
    split: str,
    *,
    tokenizer: Tokenizer | str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    sizes: Sequence[int] = FEWREL_SIZES,
    markers: str | Sequence[str] = "text",
    max_length: int | None = None,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
) -> ArraySource:
    """FewRel relations of one class split as token ids (700 instances per relation).

    `markers="text"` inserts `[E1] ... [/E1]`, `[E2] ... [/E2]` as ordinary text
    (a few word pieces each; a frozen encoder reads them as brackets);
    `markers="unused"` uses the BERT vocabulary's `[unused0]`..`[unused3]` as
    single tokens (special tokens of a copy of `tokenizer`, which stays as given: better for
    fine-tuning, meaningless to a frozen encoder); or pass four strings.
    """
    tok = as_tokenizer(tokenizer)
    if markers == "text":
        markers = ENTITY_MARKERS
    elif markers == "unused":
        markers = tuple(f"[unused{i}]" for i in range(4))
        absent = [m for m in markers if tok.raw.token_to_id(m) is None]
        if absent:
            raise ValueError(f"markers='unused' needs {absent} in the vocabulary; use markers='text'.")
        tok = tok.with_special_tokens(markers)
    elif isinstance(markers, str):
        raise ValueError(f"markers={markers!r} is not 'text', 'unused' or four strings.")
    texts, labels, names = fewrel_texts(split, data_dir=data_dir, seed=seed, sizes=sizes, markers=markers)
    all_texts = None
    if max_length is None:  # bucket sized on all 16 relations, the same for every split
        all_texts = fewrel_texts("train", data_dir=data_dir, seed=seed, sizes=(16, 0, 0), markers=markers)[0]
    return _texts_source(texts, labels, names, tok, max_length=max_length, buckets=buckets, all_texts=all_texts)


def text_file_texts(
    path: str | os.PathLike, *, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], np.ndarray, list[str]]:
    """Rows of a CSV (`.csv`, `.tsv`) or JSON-lines (`.jsonl`, `.ndjson`) file: every label a class.

    Class names are the sorted distinct label values (as strings, surrounding spaces removed; a JSON number such
    as 1.0 is the label "1"). A file saved with a byte-order mark (Excel's "CSV UTF-8") reads as any other. TSV
    fields are split at tabs only (quotes are text). A row with more fields than the header (an unquoted comma
    in a CSV text), an empty text or label, or a JSON line that is not an object is an error naming the row;
    rows repeated exactly are dropped with a warning, so that no query is a copy of a support example.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder; a text model reads a .csv, .tsv or .jsonl file.")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a .csv, .tsv or .jsonl file.")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = (csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv"
                      else csv.DictReader(f))
            rows = []
            for row in reader:
                if None in row:
                    raise ValueError(f"{path}: line {reader.line_num} has {len(row[None])} more field(s) than the "
                                     f"header {reader.fieldnames}; quote a text that holds a comma (\"a, b\").")
                rows.append((reader.line_num, row))
    elif suffix in (".jsonl", ".ndjson"):
        rows = []
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{n} is not valid JSON ({e}); one JSON object per line.") from e
                    if not isinstance(row, dict):
                        raise ValueError(f"{path}:{n} is a JSON {type(row).__name__}, not an object; one object "
                                         f"per line, e.g. {{\"{text_column}\": \"...\", \"{label_column}\": \"...\"}}.")
                    rows.append((n, row))
    else:
        raise ValueError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl.")
    if not rows:
        raise ValueError(f"{path} has no rows.")
    for col in (text_column, label_column):
        if col not in rows[0][1]:
            raise ValueError(
                f"{path} has no column {col!r}; its columns are {sorted(rows[0][1])}. Name the text and label "
                "columns (evaluate.py --text_column/--label_column; config.text.text_column/label_column)."
            )
    pairs = []
    for n, row in rows:
        text, label = row.get(text_column), _label_value(row.get(label_column))
        if text is None or not str(text).strip() or not label:
            raise ValueError(f"{path}: line {n} has an empty or missing {text_column!r} or {label_column!r}: {row}; "
                             "fill it in or remove the row.")
        pairs.append((str(text), label))
    unique = list(dict.fromkeys(pairs))
    if len(unique) < len(pairs):
        warnings.warn(f"{path}: {len(pairs) - len(unique)} of {len(pairs)} rows repeat an earlier row (same text "
                      "and label) and are dropped, so that no query is a copy of a support example.", stacklevel=2)
    labels_of: dict[str, set] = {}
    for text, label in unique:
        labels_of.setdefault(text, set()).add(label)
    ambiguous = [t for t, ls in labels_of.items() if len(ls) > 1]
    if ambiguous:
        warnings.warn(f"{path}: {len(ambiguous)} texts carry more than one label (e.g. {ambiguous[0]!r}: "
                      f"{sorted(labels_of[ambiguous[0]])}); each copy stays in its class.", stacklevel=2)
    names = sorted({label for _, label in unique})
    index = {n: i for i, n in enumerate(names)}
    return [t for t, _ in unique], np.array([index[label] for _, label in unique], dtype=np.int64), names


def _label_value(label) -> str:
    """A label cell as a class name: spaces stripped, a whole JSON number without its ".0" ("" when missing)."""
    if label is None:
        return ""
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    return str(label).strip()


def text_file(
    path: str | os.PathLike,
    *,
    tokenizer: Tokenizer | str | os.PathLike,
    text_column: str = "text",
    label_column: str = "label",
    max_length: int | None = None,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
) -> ArraySource:
    """A user's labelled CSV / JSONL file as token ids; every label in it is a class."""
    texts, labels, names = text_file_texts(path, text_column=text_column, label_column=label_column)
    return _texts_source(texts, labels, names, as_tokenizer(tokenizer), max_length=max_length, buckets=buckets,
                         warn_cut=True)
