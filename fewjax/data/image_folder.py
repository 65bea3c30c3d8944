"""Bring your own images: `root/<class>/<image>`, or pre-split `root/<split>/<class>/<image>`, as an `ArraySource`.

Class-level splits come from the folders themselves when `root` holds
`train/`, `val/` and `test/` (the layout miniImageNet and tieredImageNet are
distributed in: each split reads its own folder), else from files (one class
name a line, `split_files`) or from a seeded partition of the sorted class
names (`partition`). Images are stored as uint8 `[N, H, W, C]` (C = 1 with
`grayscale=True`, else 3); the episode sampler yields float32 in [0, 1].

Polarity: fewjax's convention is foreground (ink, strokes) high and background
low, as the built-in Omniglot loader stores it. Scans and Omniglot's own PNGs
are dark ink on a light background, so grayscale folders are normalised:
`invert="auto"` (the default) inverts every image when most images have a
light border (mean above 127 on the one-pixel frame), with a warning, and
warns when the folder mixes both; `invert=True` / `False` decide it
explicitly. Inversion (255 - x) follows decoding and resizing exactly as in
`fewjax.data.omniglot`, so the same PNGs give the same arrays through both.
RGB images (photos) are only inverted with `invert=True`.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> from fewjax.data import image_folder
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for c in ["cat", "dog", "eel"]:
    ...     (root / c).mkdir()
    ...     for i in range(3):
    ...         Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(root / c / f"{i}.png")
    >>> src = image_folder(root, split="train", partition={"train": 2, "test": 1}, seed=0)
    >>> src.num_classes, src.example_shape
    (2, (8, 8, 3))
    >>> split = pathlib.Path(tempfile.mkdtemp())  # pre-split: split/<split>/<class>/<image>, any image size
    >>> for s, c, size in [("train", "cat", 8), ("val", "dog", 10), ("test", "eel", 12)]:
    ...     (split / s / c).mkdir(parents=True)
    ...     Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(split / s / c / "0.png")
    >>> src = image_folder(split, split="test", image_size=8)
    >>> src.class_names, src.example_shape
    (('eel',), (8, 8, 3))
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fewjax.data.sources import ArraySource

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = ("train", "val", "test")
"""The subfolders of a pre-split root (`root/<split>/<class>/<image>`)."""


def split_folders(root) -> dict[str, Path] | None:
    """`{split: root/split}` when `root` is pre-split (has `train/`, `val/` and `test/`), None when it has none of
    them (the flat `root/<class>/<image>` layout).

    Raises:
      ValueError: `root` has some of the three split folders but not all.
    """
    root = Path(root).expanduser()
    present = [s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    if not present:
        return None
    missing = [s for s in SPLIT_FOLDERS if s not in present]
    if missing:
        raise ValueError(
            f"{root} has {', '.join(p + '/' for p in present)} but no {', '.join(m + '/' for m in missing)}: a "
            f"pre-split image folder needs all of train/, val/ and test/ (each <split>/<class>/<image>); add "
            f"{'them' if len(missing) > 1 else 'it'}, or for the flat root/<class>/<image> layout rename the "
            f"class folder{'s' if len(present) > 1 else ''} {', '.join(present)}.")
    folders = {s: root / s for s in SPLIT_FOLDERS}
    classes = {s: {p.name for p in f.iterdir() if p.is_dir() and not p.name.startswith(".")}
               for s, f in folders.items()}
    for i, a in enumerate(SPLIT_FOLDERS):
        for b in SPLIT_FOLDERS[i + 1:]:
            shared = sorted(classes[a] & classes[b])
            if shared:
                warnings.warn(f"{root}: {len(shared)} class folder(s) are in both {a}/ and {b}/ (e.g. "
                              f"{shared[0]!r}); few-shot splits are usually disjoint.", RuntimeWarning)
    return folders


def _classes_from_partition(classes: Sequence[str], partition: Mapping[str, float], split: str, seed: int):
    names = list(partition)
    sizes = np.asarray([partition[n] for n in names], dtype=np.float64)
    if np.any(sizes < 0) or sizes.sum() <= 0:
        raise ValueError(f"partition sizes must be >= 0 with a positive total; got {dict(partition)}.")
    if np.all(sizes == np.round(sizes)) and sizes.sum() > 1:
        counts = sizes.astype(int)  # class counts
        if counts.sum() > len(classes):
            raise ValueError(f"partition {dict(partition)} asks for {counts.sum()} classes but {len(classes)} exist.")
    else:  # fractions: floor, the remainder to the first splits
        counts = np.floor(sizes / sizes.sum() * len(classes)).astype(int)
        counts[: len(classes) - counts.sum()] += 1
    order = np.random.default_rng(seed).permutation(len(classes))
    start = int(counts[: names.index(split)].sum())
    return sorted(classes[i] for i in order[start : start + counts[names.index(split)]])


def _classes_from_file(path: Path, classes: Sequence[str], root: Path) -> list[str]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"split file {path} does not exist.")
    wanted = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    known = set(classes)
    missing = [w for w in wanted if w not in known]
    if missing:
        raise ValueError(f"split file {path} names class {missing[0]!r} ({len(missing)} missing in all), which is not "
                         f"a folder of {root}; fix the file or the data root.")
    return wanted


def image_folder(root, *, split: str | None = None, split_files: Mapping[str, os.PathLike] | os.PathLike | None = None,
                 partition: Mapping[str, float] | None = None, seed: int = 0, image_size=None,
                 grayscale: bool = False, invert: bool | str = "auto", num_workers: int = 8) -> ArraySource:
    """Images under `root/<class>/` as an `ArraySource` (classes named by their folder).

    Args:
      root: folder with one subfolder per class, or pre-split: with
        `train/`, `val/` and `test/`, each holding one subfolder per class.
      split: which class-level split to load (None: every class). A
        pre-split root reads `root/<split>/`; a flat one needs `split_files`
        or `partition`.
      split_files: `{split: path}` of text files with one class name a line,
        or a folder holding `<split>.txt` (e.g. Ravi & Larochelle's csv names
        converted to lists).
      partition: `{split: size}` for a seeded partition of the sorted class
        names; sizes are class counts (ints) or fractions, e.g.
        `{"train": 64, "val": 16, "test": 20}`.
      seed: seed of the partition.
      image_size: None (all images must have one size) or int / (height, width)
        to resize to.
      grayscale: load as 1 channel instead of RGB.
      invert: "auto" (grayscale: invert when most images have a light
        background, with a warning; RGB: never), True (255 - x) or False.
      num_workers: decoding threads.

    Raises:
      FileNotFoundError: root or a split file missing.
      ValueError: no classes or images, a split naming unknown classes, images
        of mixed sizes without `image_size`, a root with only some of
        `train/`, `val/`, `test/`, or a pre-split root without `split` or
        with `split_files` / `partition`.
    """
    if invert not in ("auto", True, False):
        raise ValueError(f"invert={invert!r}: choose 'auto', True or False.")
    root = Path(root).expanduser()
    if root.is_file():
        raise NotADirectoryError(f"image folder root {root} is a file; expected a folder root/<class>/<image>.")
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {root} does not exist (expected root/<class>/<image>).")
    folders = split_folders(root)
    if folders is not None:
        if split not in folders:
            raise ValueError(f"{root} is pre-split into train/, val/, test/: pass split= one of them (got {split!r}).")
        if split_files is not None or partition is not None:
            raise ValueError(f"{root} is pre-split into train/, val/, test/ folders: drop split_files / partition "
                             "(each split reads its own folder).")
        root, split = folders[split], None
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class subfolders (expected root/<class>/<image>).")
    if split is not None:
        if split_files is not None:
            path = (Path(split_files) / f"{split}.txt" if not isinstance(split_files, Mapping)
                    else split_files.get(split))
            if path is None:
                raise ValueError(f"split {split!r} is not in split_files (has {sorted(split_files)}).")
            classes = _classes_from_file(Path(path), classes, root)
        elif partition is not None:
            if split not in partition:
                raise ValueError(f"split {split!r} is not in partition (has {sorted(partition)}).")
            classes = _classes_from_partition(classes, partition, split, seed)
        else:
            raise ValueError(f"split={split!r} needs split_files=... or partition=... to say which classes it has.")
        if not classes:
            raise ValueError(f"split {split!r} has no classes.")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)

    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise ValueError(f"class folder {root / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        files += found
        labels += [label] * len(found)

    def load(path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as im:
                im = im.convert("L" if grayscale else "RGB")
                if image_size is not None and im.size != (image_size[1], image_size[0]):
                    im = im.resize((image_size[1], image_size[0]), Image.Resampling.LANCZOS)
                array = np.asarray(im, np.uint8)
        except OSError as error:
            raise ValueError(f"cannot read image {path}: {error}") from error
        return array[..., None] if grayscale else array

    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        images = list(pool.map(load, files))
    shapes = {}
    for path, image in zip(files, images):
        shapes.setdefault(image.shape[:2], path)
        if len(shapes) > 1:
            (s0, p0), (s1, p1) = shapes.items()
            raise ValueError(f"images have mixed sizes: {p0} is {s0[0]}x{s0[1]} but {p1} is {s1[0]}x{s1[1]}; "
                             "pass image_size=... to resize them all.")
    images = np.stack(images)
    if invert is True or (invert == "auto" and grayscale and _auto_invert(images, root)):
        images = 255 - images
    return ArraySource(images, np.asarray(labels, np.int32), classes)


def light_background(images: np.ndarray) -> np.ndarray:
    """Per image `[N, H, W, C]` uint8: whether its one-pixel border is light (mean above 127)."""
    frame = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    return frame.mean(axis=(1, 2)) > 127.5


def _auto_invert(images: np.ndarray, root: Path) -> bool:
    """Whether `invert="auto"` inverts these grayscale images (most have a light background); warns when it does or
    when the folder mixes light and dark backgrounds."""
    light = light_background(images)
    flip = 2 * int(light.sum()) > len(light)
    if flip:
        warnings.warn(f"{root}: {int(light.sum())} of {len(light)} images have a light background; inverting them "
                      "so that the foreground (ink) is high, as fewjax's Omniglot is (invert=False keeps them).",
                      RuntimeWarning, stacklevel=3)
    if light.any() and not light.all():
        warnings.warn(f"{root} mixes backgrounds: {int(light.sum())} of {len(light)} images have a light one; all "
                      f"were {'inverted' if flip else 'kept'} alike. Make the images uniform for reliable results.",
                      RuntimeWarning, stacklevel=3)
    return flip
