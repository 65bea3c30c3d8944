"""From a config to episode samplers: the only place where a run meets the data sources."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax

import fewjax.data as fd
from fewjax.data.within_group import alphabet_of, within_group_episodes
from fewjax.text.datasets import TEXT_DATASETS, label_name_examples, make_text_source

OMNIGLOT_SPLITS = {"vinyals": {"train": "train", "val": "val", "test": "test"},
                   "lake": {"train": "background", "val": "background", "test": "evaluation"},
                   "lake_rotations": {"train": "background_rotations", "val": "background", "test": "evaluation"}}
"""Lake's protocol has no validation alphabets: validation episodes (a seed of their own) come from the background
alphabets, so no evaluation alphabet influences which checkpoint is kept. "lake_rotations" trains on the background
characters at four rotations, each a class (3,856 classes, as the Vinyals split makes them; nothing of the
evaluation set)."""
PARTITION = {"train": 0.64, "val": 0.16, "test": 0.2}
"""dataset=image_folder with a flat data_dir (<root>/<class>/<image>): fractions of its classes per split (seed 0).
A pre-split data_dir (<root>/{train,val,test}/<class>/<image>) reads each split's own folder instead."""


def make_source(config, split: str, *, data_path: str | None = None, invert="auto"):
    """The class source of `split` ("train", "val" or "test"); `data_path` overrides with a folder of test classes
    (`invert`: see `fewjax.data.image_folder`)."""
    if config.dataset in TEXT_DATASETS:
        return make_text_source(config, split, data_path=data_path)
    if data_path is not None:  # a pre-split folder gives its `split` folder (evaluate.py --split)
        return fd.image_folder(data_path, split=split if fd.split_folders(data_path) else None,
                               image_size=config.image_size, grayscale=config.model.name == "conv4"
                               and config.dataset == "omniglot", invert=invert)
    data_dir = config.data_dir or None
    if config.dataset == "omniglot":
        if config.split not in OMNIGLOT_SPLITS:
            raise ValueError(f"config.split={config.split!r}: choose one of {sorted(OMNIGLOT_SPLITS)}")
        return fd.omniglot(OMNIGLOT_SPLITS[config.split][split], data_dir=data_dir, image_size=config.image_size)
    if config.dataset == "image_folder":
        if not data_dir or not Path(data_dir).is_dir():
            raise FileNotFoundError(
                f"config.data_dir={config.data_dir!r}: dataset image_folder needs data_dir=<root>/<class>/<image> "
                "or the pre-split <root>/{train,val,test}/<class>/<image>.")
        try:
            presplit = fd.split_folders(data_dir) is not None  # else a seeded 64/16/20% partition of the classes
        except ValueError as error:
            raise ValueError(f"config.data_dir={config.data_dir!r}: {error}") from error
        return fd.image_folder(data_dir, split=split, partition=None if presplit else PARTITION, seed=0,
                               image_size=config.image_size)
    raise ValueError(f"config.dataset={config.dataset!r} has no class source")


def make_sampler(config, split: str, *, seed: int, data_path: str | None = None, invert="auto", features=None):
    """Training episodes for split "train", test-time episodes (test_ways/shots/queries) otherwise.

    `features`: `x [N, ...] -> [N, d]` (`Method.features` with the params bound); the episodes then hold every
    example's features, computed once, instead of the example (the same episodes: see `ArraySource.map_examples`).
    """
    train = split == "train"
    shots = config.shots if train else config.test_shots
    queries = config.queries if train else config.test_queries
    if config.dataset == "sinusoid" and data_path is None:
        return fd.sinusoid(shots=shots, queries=queries, seed=seed)
    ways = config.ways if train else config.test_ways
    source = make_source(config, split, data_path=data_path, invert=invert)
    names = label_name_examples(config, source) if config.dataset in TEXT_DATASETS and config.text.label_names else None

    grouped = train and config.train_within_alphabet > 0
    alphabets = [alphabet_of(n) for n in source.class_names] if grouped else None
    within_alphabet_test = split == "test" and config.within_alphabet and data_path is None

    def sampler(source, names):
        if within_alphabet_test:
            return within_group_episodes(source, groups=[alphabet_of(n) for n in source.class_names], ways=ways,
                                         shots=shots, queries=queries, seed=seed)
        return fd.episodes(source, ways=ways, shots=shots, queries=queries, seed=seed,
                           augment=_augment(config) if train else None, class_examples=names, groups=alphabets,
                           within_group=config.train_within_alphabet if grouped else 0.0)

    try:
        checked = sampler(source, names)  # a bad ways/shots/queries is refused before anything is embedded
    except fd.GroupsTooSmall as e:
        if grouped:
            raise ValueError(f"config.train_within_alphabet={config.train_within_alphabet} draws training episodes "
                             f"within one alphabet, but config.ways={ways} exceeds the largest one ({e.largest} "
                             "classes): lower config.ways to at most that, or set config.train_within_alphabet=0."
                             ) from None
        raise ValueError(f"config.within_alphabet=True tests within one alphabet, but config.test_ways={ways} exceeds "
                         f"the largest one ({e.largest} classes): lower config.test_ways to at most that, or set "
                         "config.within_alphabet=False.") from None
    if features is None:
        return checked
    return sampler(source.map_examples(features), None if names is None else features(names))


class Scoring(NamedTuple):
    eval_fn: Callable  # (params, tasks) -> per-task metrics
    sampler: Any
    features_seconds: float | None  # the time taken to embed every example once; None: examples are scored


def episodes_to_score(method, params, config, split: str, *, seed: int, data_path: str | None = None,
                      invert="auto") -> Scoring:
    """What scores `params` on `split`'s test-time episodes: for a method with fixed test-time features
    (`Method.features`), each example is embedded once and `Method.score` compares features; otherwise (and across
    processes, whose params no one process holds whole) `Method.evaluate` runs on the examples."""
    if method.features is None or jax.process_count() > 1:
        return Scoring(method.evaluate, make_sampler(config, split, seed=seed, data_path=data_path, invert=invert),
                       None)
    start = time.perf_counter()
    sampler = make_sampler(config, split, seed=seed, data_path=data_path, invert=invert,
                           features=lambda x: method.features(params, x))
    return Scoring(method.score, sampler, round(time.perf_counter() - start, 3))


def _augment(config):
    """The training augmentation of `config.augment`, in this order: resized crop, affine, flip, colour jitter
    (each drawn per example); None when all are off."""
    a, aug = config.augment, fd.augment
    steps = []
    if a.resized_crop:
        steps.append(aug.random_resized_crop(scale=(a.crop_min_scale, 1.0)))
    if a.affine:
        steps.append(aug.random_affine(max_rotation=a.max_rotation, max_shear=a.max_shear, max_scale=a.max_scale,
                                       max_shift=a.max_shift))
    if a.flip:
        steps.append(aug.random_flip())
    if a.color_jitter > 0:
        steps.append(aug.color_jitter(brightness=a.color_jitter, contrast=a.color_jitter, saturation=a.color_jitter))
    if len(steps) <= 1:  # one alone is not composed: affine-only runs keep their random draws
        return steps[0] if steps else None
    return aug.compose(*steps)
