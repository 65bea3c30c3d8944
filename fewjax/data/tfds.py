"""Any tensorflow-datasets image classification dataset as an `ArraySource` (optional extra, no TensorFlow).

Reads a PREPARED dataset through `tfds.data_source` (array_record random
access), which needs neither TensorFlow nor `tfds.load`. Install the extra
with `pip install "fewjax[tfds]"` and prepare the dataset once (e.g. with
the `tfds build` command on a machine with TensorFlow, or let tfds download
a prepared copy); fewjax never imports TensorFlow.

Classes present in the split are relabelled `0..C-1` in increasing order of
their tfds label; `class_names` come from the label feature's names when it
has them.

Example:
    >>> import tensorflow_datasets as tfds  # doctest: +SKIP
    >>> from fewjax.data import tfds_source, episodes
    >>> with tfds.testing.mock_data(num_examples=50):  # doctest: +SKIP
    ...     src = tfds_source("mnist", "train")
    >>> src.example_shape  # doctest: +SKIP
    (28, 28, 1)
"""
from __future__ import annotations

import numpy as np

from fewjax.data.sources import ArraySource


def _import_tfds():
    try:
        import tensorflow_datasets
    except ImportError as error:
        raise ImportError(
            "fewjax.data.tfds_source needs tensorflow-datasets (TensorFlow is NOT required): "
            'pip install "fewjax[tfds]"  (or: pip install tensorflow-datasets importlib_resources array_record)'
        ) from error
    return tensorflow_datasets


def tfds_source(name: str, split: str, *, data_dir=None, image_key: str = "image", label_key: str = "label",
                image_size=None, max_examples: int | None = None) -> ArraySource:
    """The tfds dataset `name`, split `split` (any tfds split string, e.g. "train[:80%]") as an ArraySource.

    Args:
      name: tfds name, e.g. "mnist" or "omniglot" (must be prepared in `data_dir`).
      split: tfds split.
      data_dir: tfds data directory (default: tfds' own, `~/tensorflow_datasets`).
      image_key, label_key: feature names of the image and the class label.
      image_size: None (images must share one size) or int / (height, width) to resize.
      max_examples: read only the first this many examples (quick experiments).
    """
    tfds = _import_tfds()
    source = tfds.data_source(name, split=split, data_dir=data_dir)
    n = len(source) if max_examples is None else min(len(source), int(max_examples))
    if n == 0:
        raise ValueError(f"tfds dataset {name!r} split {split!r} is empty.")
    first = source[0]
    for key in (image_key, label_key):
        if key not in first:
            raise ValueError(f"tfds dataset {name!r} has no feature {key!r}; its features are {sorted(first)}. "
                             "Pass image_key=... / label_key=....")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    images, labels = [], []
    for i in range(n):
        example = first if i == 0 else source[i]
        image = np.asarray(example[image_key])
        if image.ndim == 2:
            image = image[..., None]
        if image_size is not None and image.shape[:2] != tuple(image_size):
            image = _resize(image, image_size)
        images.append(image)
        labels.append(int(example[label_key]))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"tfds dataset {name!r} has images of mixed shapes {sorted(shapes)[:3]}; "
                         "pass image_size=... to resize them all.")
    raw = np.asarray(labels)
    present, relabelled = np.unique(raw, return_inverse=True)
    try:
        names = tfds.builder(name, data_dir=data_dir).info.features[label_key].names
        class_names = [names[c] for c in present]
    except Exception:  # label feature without names (or no builder metadata): use the numbers
        class_names = [str(c) for c in present]
    return ArraySource(np.stack(images), relabelled.astype(np.int32), class_names)


def _resize(image: np.ndarray, size) -> np.ndarray:
    from PIL import Image

    channels = image.shape[-1]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.asarray(pil.resize((size[1], size[0]), Image.Resampling.LANCZOS), image.dtype)
    return out[..., None] if channels == 1 else out
