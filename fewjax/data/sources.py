"""Sources: class -> examples, nothing random.

A source holds every example of a split in memory, grouped by integer class
label. It knows nothing of episodes; `fewjax.data.episodes` samples from it.
Examples can be anything with a leading example axis: uint8 images
`[N, H, W, C]`, int32 token ids `[N, L]`, float features `[N, D]`.

Example:
    >>> import numpy as np
    >>> from fewjax.data import ArraySource
    >>> x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    >>> y = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    >>> src = ArraySource(x, y, ["a", "b", "c"])
    >>> src.num_classes, src.example_shape, src.counts.tolist()
    (3, (3,), [3, 4, 3])
    >>> padded, counts = src.padded()
    >>> padded.shape
    (3, 4, 3)
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class ArraySource:
    """A generic in-memory class -> examples source.

    Args:
      examples: array with the example axis first, `[N, *example_shape]`.
      labels: integer labels `[N]` in `0..C-1`; every class must have at least
        one example. Classes may have different numbers of examples.
      class_names: `C` names, one per label (used in error messages).
    """

    def __init__(self, examples: np.ndarray, labels: np.ndarray, class_names: Sequence[str]):
        examples = np.asarray(examples)
        labels = np.asarray(labels)
        class_names = [str(n) for n in class_names]
        if examples.ndim < 1:
            raise ValueError(f"examples must have a leading example axis; got a scalar of shape {examples.shape}.")
        if labels.ndim != 1 or labels.shape[0] != examples.shape[0]:
            raise ValueError(
                f"labels must be 1-D with one label per example: examples.shape={examples.shape}, "
                f"labels.shape={labels.shape}."
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers 0..C-1; got dtype {labels.dtype}.")
        num_classes = len(class_names)
        if num_classes == 0:
            raise ValueError("class_names is empty: a source needs at least one class.")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"labels must lie in 0..{num_classes - 1} (one per class name); got range "
                f"{labels.min()}..{labels.max()}."
            )
        counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(
                f"class {class_names[empty[0]]!r} (label {empty[0]}) has no examples; "
                f"{empty.size} classes are empty. Drop them from class_names and relabel."
            )
        order = np.argsort(labels, kind="stable")
        self._examples = examples[order]
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._counts = counts
        self._class_names = tuple(class_names)

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self._examples.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self._examples.dtype

    @property
    def counts(self) -> np.ndarray:
        """Examples per class, `[C]` int64."""
        return self._counts.copy()

    @property
    def nbytes(self) -> int:
        return int(self._examples.nbytes)

    def class_examples(self, c: int) -> np.ndarray:
        """All examples of class `c`, `[counts[c], *example_shape]` (a view, do not modify)."""
        if not 0 <= c < self.num_classes:
            raise IndexError(f"class index {c} out of range 0..{self.num_classes - 1}.")
        return self._examples[self._offsets[c] : self._offsets[c + 1]]

    def gather(self, class_ids: np.ndarray, example_ids: np.ndarray) -> np.ndarray:
        """Examples `example_ids[...]` of classes `class_ids[...]` (broadcast together).

        `example_ids` index within each class (`0..counts[c]-1`); no bounds
        check beyond numpy's, the caller draws them from `counts`.
        """
        flat = self._offsets[np.asarray(class_ids)] + np.asarray(example_ids)
        return self._examples[flat]

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """Examples as `[C, max_n, *example_shape]` (zero padded) and counts `[C]` int32.

        The dense layout of the on-device sampler: row `c` holds the
        `counts[c]` examples of class `c` first, then zeros.
        """
        max_n = int(self._counts.max())
        out = np.zeros((self.num_classes, max_n, *self.example_shape), dtype=self.dtype)
        for c in range(self.num_classes):
            out[c, : self._counts[c]] = self.class_examples(c)
        return out, self._counts.astype(np.int32)

    def map_examples(self, fn: Callable[[np.ndarray], np.ndarray]) -> "ArraySource":
        """A new source whose examples are `fn(all examples)` `[N, ...] -> [N, ...]`, classes and order kept: an
        episode sampler with the same seed draws the same episodes from it (features embedded once, say).

        Example:
            >>> src = ArraySource(np.arange(6.0)[:, None], np.array([0, 1, 0, 1, 0, 1]), ["a", "b"])
            >>> src.map_examples(lambda x: 10 * x).class_examples(1).ravel().tolist()
            [10.0, 30.0, 50.0]
        """
        labels = np.repeat(np.arange(self.num_classes), self._counts)
        mapped = np.asarray(fn(self._examples))
        if mapped.shape[0] != self._examples.shape[0]:
            raise ValueError(f"map_examples: fn returned {mapped.shape[0]} rows for {self._examples.shape[0]} "
                             "examples; it must return one per example.")
        return ArraySource(mapped, labels, self._class_names)

    def subset(self, classes: Sequence[int]) -> "ArraySource":
        """A new source with only `classes` (relabelled 0..len(classes)-1, in the given order)."""
        classes = [int(c) for c in classes]
        xs = [self.class_examples(c) for c in classes]
        ys = [np.full(len(x), i, dtype=np.int32) for i, x in enumerate(xs)]
        return ArraySource(np.concatenate(xs), np.concatenate(ys), [self._class_names[c] for c in classes])

    def __repr__(self) -> str:
        return (
            f"ArraySource(num_classes={self.num_classes}, examples={int(self._counts.sum())}, "
            f"example_shape={self.example_shape}, dtype={self.dtype})"
        )
