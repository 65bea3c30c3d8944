"""Episodes whose classes all come from one group, with support and query drawn by different people.

Lake et al.'s (2015) one-shot test is harder than random episodes: the 20 characters of an episode all come from
ONE alphabet (they look alike), and the support images are drawn by one person while the queries are drawn by
another. `within_group_episodes(source, groups=..., ...)` samples such episodes from any `ArraySource` whose classes
carry a group (an alphabet) and whose example `j` of every class comes from the same origin `j` (a drawer: Omniglot
stores the 20 drawings of every character in drawer order, and `fewjax.data.omniglot` keeps that order).

Each episode draws a group with at least `ways` classes (uniformly over those groups), `ways` of its classes, and
`shots + queries` distinct example positions shared by all its classes: the first `shots` positions are the support
drawers, the rest the query drawers, so no drawer appears in both. Like `episodes`, an episode is a function of
`(seed, step, task index)` only, and the layout is the same. The sampler is host-only (evaluation); it is never
placed on the device.

Example:
    >>> import numpy as np
    >>> from fewjax.data import ArraySource
    >>> from fewjax.data.within_group import within_group_episodes
    >>> x = np.repeat(np.arange(6, dtype=np.uint8), 4).reshape(24, 1)        # 6 classes x 4 drawers
    >>> src = ArraySource(x, np.repeat(np.arange(6), 4), [f"{a}/c{i}" for a in "AB" for i in range(3)])
    >>> sampler = within_group_episodes(src, groups=[n.split("/")[0] for n in src.class_names], ways=3, shots=1,
    ...                                 queries=1, seed=0)
    >>> task = sampler.sample(0)
    >>> len(set((task.support.x[:, 0] * 255).round().astype(int) // 3))    # one alphabet: classes 0-2 or 3-5
    1
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fewjax.data.episodes import EpisodeSampler, group_members
from fewjax.data.sources import ArraySource


class WithinGroupSampler(EpisodeSampler):
    """`EpisodeSampler` whose tasks take all classes from one group and shared example positions (drawers)."""

    def __init__(self, source: ArraySource, *, groups: Sequence[str], ways: int, shots: int, queries: int,
                 seed: int):
        super().__init__(source, ways=ways, shots=shots, queries=queries, seed=seed)
        self.group_names = [str(g) for g in groups]
        if len(self.group_names) != source.num_classes:
            raise ValueError(f"groups must name one group per class ({source.num_classes}); got {len(groups)}.")
        self.groups = group_members(self.group_names, np.arange(source.num_classes), self.ways)
        self.positions = int(source.counts.min())
        if self.shots + self.queries > self.positions:
            raise ValueError(f"shots + queries = {self.shots + self.queries} distinct drawers per task, but some class "
                             f"has only {self.positions} examples: lower shots or queries.")

    def _draw(self, seed: int, step: int, task_index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, int(step), int(task_index)])
        members = self.groups[rng.integers(len(self.groups))]
        classes = rng.choice(members, self.ways, replace=False)
        positions = rng.choice(self.positions, self.shots + self.queries, replace=False)
        return classes, np.broadcast_to(positions, (self.ways, len(positions)))

    @property
    def fits_on_device(self) -> bool:
        return False

    def device_state(self, sharding=None):
        raise NotImplementedError("within-group episodes are sampled on the host (evaluation only)")

    def with_seed(self, seed: int) -> "WithinGroupSampler":
        return WithinGroupSampler(self.source, groups=self.group_names, ways=self.ways, shots=self.shots,
                                  queries=self.queries, seed=seed)


def within_group_episodes(source: ArraySource, *, groups: Sequence[str], ways: int, shots: int, queries: int,
                          seed: int) -> WithinGroupSampler:
    """Episodes of `ways` classes of one group, support and query from disjoint example positions (see module).

    Args:
      source: classes whose example `j` has the same origin (drawer) in every class.
      groups: the group (e.g. alphabet) of each class, `[num_classes]`.
      ways, shots, queries, seed: as for `fewjax.data.episodes`.
    """
    return WithinGroupSampler(source, groups=groups, ways=ways, shots=shots, queries=queries, seed=seed)


def alphabet_of(class_name: str) -> str:
    """The alphabet of an Omniglot class name ("Alphabet/characterNN" or "Alphabet/characterNN/rotDDD")."""
    return class_name.split("/")[0]
