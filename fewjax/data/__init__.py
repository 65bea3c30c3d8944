"""Episode data: sources (class -> examples) -> episodes (seeded, fixed shapes) -> prefetch (a background thread); device placement is fewjax.placement.

Example:
    >>> import numpy as np, fewjax.data as fd
    >>> src = fd.ArraySource(np.zeros((40, 8), np.float32), np.arange(40) % 4, ["a", "b", "c", "d"])
    >>> fd.episodes(src, ways=2, shots=1, queries=2, seed=0).sample_batch(0, 3).query.x.shape
    (3, 4, 8)
"""
from fewjax.data import augment
from fewjax.data.episodes import ClassesTooSmall, DeviceState, EpisodeSampler, GroupsTooSmall, episodes
from fewjax.data.image_folder import image_folder, split_folders
from fewjax.data.omniglot import omniglot
from fewjax.data.pipeline import prefetch
from fewjax.data.sampler import Sampler
from fewjax.data.sinusoid import SinusoidSampler, sinusoid
from fewjax.data.sources import ArraySource
from fewjax.data.tfds import tfds_source

__all__ = [
    "ArraySource", "ClassesTooSmall", "DeviceState", "EpisodeSampler", "GroupsTooSmall", "SinusoidSampler", "augment",
    "episodes", "image_folder", "omniglot", "Sampler", "prefetch", "sinusoid", "split_folders", "tfds_source",
]
