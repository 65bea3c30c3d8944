"""Seeded, fixed-shape episode sampling.

`episodes(source, ways=, shots=, queries=, seed=)` returns an `EpisodeSampler`
with two interchangeable paths:

- host (numpy): `sample(step, task_index)` / `sample_batch(step, task_indices)`,
  for sources too big for the accelerator; wrap an iterator of batches in
  `fewjax.data.prefetch` to overlap it with the step;
- device (jax): put `state = sampler.device_state()` on the device once, pass it
  INTO the jitted step, and draw the meta-batch there with
  `sampler.device_sample(state, step, task_indices)`: no host work per step.

Every task depends only on `(seed, step, task_index)`, never on history: a
resumed run, or a run on another number of processes (each passing its slice
of the global task indices), draws exactly the same tasks. The host path uses
`np.random.default_rng([seed, step, task_index])`; the device path
`fold_in(fold_in(key(seed), step), task_index)`. The two paths do not draw the
same tasks as each other, but each is replayable.

Layout of a task (both paths): `support.x` is `[ways * shots, *example_shape]`
and `query.x` is `[ways * queries, *example_shape]`, class-major (rows
`i*shots .. (i+1)*shots-1` are class `i`), `y` is int32 in `0..ways-1`. Which
source class gets which label is random per task. Classes are drawn without
replacement, examples within a class without replacement, and support and
query never share an example. uint8 sources (images) come out as float32 in
[0, 1]; any other dtype (e.g. int32 token ids) is passed through unchanged.

Example:
    >>> import jax, numpy as np
    >>> from fewjax.data import ArraySource, episodes
    >>> src = ArraySource(np.zeros((100, 28, 28, 1), np.uint8), np.arange(100) % 10, list("abcdefghij"))
    >>> sampler = episodes(src, ways=5, shots=1, queries=3, seed=0)
    >>> task = sampler.sample(step=0)
    >>> task.support.x.shape, task.query.y.shape
    ((5, 28, 28, 1), (15,))
    >>> state = sampler.device_state()
    >>> step_fn = jax.jit(lambda state, step: sampler.device_sample(state, step, jax.numpy.arange(4)))
    >>> step_fn(state, 7).support.x.shape
    (4, 5, 28, 28, 1)
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Iterator, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from fewjax.data.sources import ArraySource
from fewjax.types import Batch, Task

TaskIndices = Union[int, Sequence[int], np.ndarray]

DEVICE_BYTES_LIMIT = 2 << 30
"""`fits_on_device` is True when the padded split takes at most this many bytes."""


class DeviceState(NamedTuple):
    """What the on-device sampler reads: a pytree to place on the device once.

    examples: `[C, max_n, *example_shape]` in the source dtype (zero padded);
    counts: `[C]` int32; log_weights: `[C]` float32 class log-weights (0 =
    uniform, -inf = never drawn); update it to re-weight without recompiling
    (`fewjax.data.task_sampling` does, step by step, inside the trainer's step).
    """

    examples: jax.Array
    counts: jax.Array
    log_weights: jax.Array


def _to_float(x):
    """uint8 images -> float32 in [0, 1]; anything else unchanged (works for numpy and jax)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1.0 / 255.0)
    return x


def _task_indices(task_indices: TaskIndices) -> np.ndarray:
    if isinstance(task_indices, (int, np.integer)):
        if task_indices < 0:
            raise ValueError(f"task_indices={task_indices}: a count must be >= 0.")
        return np.arange(int(task_indices))
    idx = np.asarray(task_indices)
    if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"task_indices must be an int or a 1-D sequence of ints; got {task_indices!r}.")
    return idx.astype(np.int64)


class EpisodeSampler:
    """Draws `ways`-way `shots`-shot tasks with `queries` queries per class. Build with `episodes(...)`."""

    def __init__(self, source: ArraySource, *, ways: int, shots: int, queries: int, seed: int,
                 augment: Callable | None = None, class_weights=None, class_examples=None,
                 groups: Sequence[str] | None = None, within_group: float = 0.0):
        for name, value, low in (("ways", ways, 1), ("shots", shots, 1), ("queries", queries, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
        self.source = source
        self.ways, self.shots, self.queries, self.seed = int(ways), int(shots), int(queries), int(seed)
        self.augment = augment
        num_classes = source.num_classes
        if class_weights is None:
            weights = None
            eligible = np.arange(num_classes)
        else:
            weights = np.asarray(class_weights, dtype=np.float64)
            if weights.shape != (num_classes,):
                raise ValueError(
                    f"class_weights must have one weight per class, shape ({num_classes},); got {weights.shape}."
                )
            if not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError("class_weights must be finite and >= 0 (0 = never drawn).")
            eligible = np.flatnonzero(weights > 0)
        self.class_weights = weights
        if self.ways > len(eligible):
            what = "classes" if weights is None else "classes with a positive weight"
            raise ValueError(
                f"ways={self.ways} but the source has only {len(eligible)} {what}: "
                f"lower ways to at most {len(eligible)} or use a split with more classes."
            )
        need = self.shots + self.queries
        counts = source.counts
        short = eligible[counts[eligible] < need]
        if short.size:
            c = short[np.argmin(counts[short])]
            raise ClassesTooSmall(self.shots, self.queries, str(source.class_names[c]), int(counts[c]),
                                  int(short.size))
        if class_examples is not None:
            class_examples = np.asarray(class_examples)
            if class_examples.shape != (num_classes, *source.example_shape):
                raise ValueError(f"class_examples must hold one example per class, shape "
                                 f"{(num_classes, *source.example_shape)}; got {class_examples.shape}.")
        self.class_examples = class_examples
        self.class_groups, self.within_group = groups, float(within_group)
        self._group_members = _within_group_members(groups, eligible, num_classes, self.ways, self.within_group)
        if self._group_members is not None:
            self._in_group = np.zeros((len(self._group_members), num_classes), bool)  # [groups, classes]
            for g, members in enumerate(self._group_members):
                self._in_group[g, members] = True
        self.support_size = self.shots + (class_examples is not None)  # support examples per class
        self._probs = None if weights is None else weights / weights.sum()
        self._host_augment = None if augment is None else jax.jit(jax.vmap(augment))

    # ---------------------------------------------------------------- host path
    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.source.dtype == np.uint8 else self.source.dtype

    def _draw(self, seed: int, step: int, task_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Source class ids `[ways]` and within-class example ids `[ways, shots+queries]`."""
        rng = np.random.default_rng([seed, int(step), int(task_index)])
        num_classes = self.source.num_classes
        if self._group_members is not None and rng.random() < self.within_group:
            members = self._group_members[rng.integers(len(self._group_members))]
            p = None if self._probs is None else self._probs[members] / self._probs[members].sum()
            classes = members[rng.choice(len(members), self.ways, replace=False, p=p)]
        else:
            classes = rng.choice(num_classes, self.ways, replace=False, p=self._probs)
        counts = self.source.counts[classes]
        keys = rng.random((self.ways, int(counts.max())))
        keys[np.arange(keys.shape[1])[None, :] >= counts[:, None]] = 2.0  # padding sorts last
        examples = np.argsort(keys, axis=1)[:, : self.shots + self.queries]
        return classes, examples

    def _host_batch(self, seed: int, step: int, task_indices: TaskIndices) -> Task:
        idx = _task_indices(task_indices)
        if int(step) < 0:
            raise ValueError(f"step must be >= 0; got {step}.")
        draws = [self._draw(seed, step, i) for i in idx]
        classes = np.stack([c for c, _ in draws]) if draws else np.zeros((0, self.ways), np.int64)
        examples = (np.stack([e for _, e in draws]) if draws
                    else np.zeros((0, self.ways, self.shots + self.queries), np.int64))
        x = _to_float(self.source.gather(classes[:, :, None], examples))  # [B, ways, n, *shape]
        if self._host_augment is not None and len(idx):
            keys = jax.vmap(lambda i: jax.random.fold_in(
                jax.random.fold_in(jax.random.key(seed), step), i))(jnp.asarray(idx, jnp.uint32))
            x = np.asarray(self._host_augment(keys, x))
        return self._split(self._with_class_examples(x, classes, np), len(idx), np)

    def _with_class_examples(self, x, classes, xp):
        """`x` `[..., ways, shots + queries, *shape]` with each class's own example (`class_examples`) inserted
        after its support examples; `classes` `[..., ways]` are the source classes."""
        if self.class_examples is None:
            return x
        rank = len(self.source.example_shape)
        axis = x.ndim - rank - 1
        own = xp.expand_dims(_to_float(xp.asarray(self.class_examples)[classes]), axis).astype(x.dtype)
        head, tail = xp.split(x, [self.shots], axis=axis)
        return xp.concatenate([head, own, tail], axis=axis)

    def _split(self, x, batch: int, xp) -> Task:
        shape = x.shape[3:]
        s, q = self.support_size, self.queries
        y_s = xp.broadcast_to(xp.repeat(xp.arange(self.ways, dtype=xp.int32), s), (batch, self.ways * s))
        y_q = xp.broadcast_to(xp.repeat(xp.arange(self.ways, dtype=xp.int32), q), (batch, self.ways * q))
        support = Batch(x[:, :, :s].reshape(batch, self.ways * s, *shape), y_s)
        query = Batch(x[:, :, s:].reshape(batch, self.ways * q, *shape), y_q)
        if xp is np:
            support = Batch(support.x, np.ascontiguousarray(support.y))
            query = Batch(query.x, np.ascontiguousarray(query.y))
        return Task(support, query)

    def sample(self, step: int, task_index: int = 0) -> Task:
        """One task (numpy arrays, no task axis), a function of `(seed, step, task_index)` only."""
        return jax.tree.map(lambda a: a[0], self._host_batch(self.seed, step, [task_index]))

    def sample_batch(self, step: int, task_indices: TaskIndices) -> Task:
        """A meta-batch (numpy, leading task axis). `task_indices`: an int n (= range(n)) or a sequence of ints.

        Row j is `sample(step, task_indices[j])`, so a process can draw its slice
        of a global meta-batch: `sample_batch(step, range(p * b, (p + 1) * b))`.
        """
        return self._host_batch(self.seed, step, task_indices)

    def batches(self, task_indices: TaskIndices, *, start_step: int = 0) -> Iterator[Task]:
        """An endless iterator of `sample_batch(step, task_indices)` for step = start_step, start_step+1, ...

        Resume by passing the step to restart from; wrap in `prefetch(...)`.
        """
        step = int(start_step)
        while True:
            yield self.sample_batch(step, task_indices)
            step += 1

    def eval_set(self, num_episodes: int, *, seed: int) -> Task:
        """A fixed evaluation set: `num_episodes` tasks (numpy, leading episode axis) drawn from `seed` alone.

        Episode i is the same whatever the training seed; use a seed that no
        training run uses. For large sets use `eval_batches` to bound memory.
        """
        return self._host_batch(int(seed), 0, int(num_episodes))

    def eval_batches(self, num_episodes: int, *, seed: int, batch_size: int, start: int = 0) -> Iterator[Task]:
        """`eval_set(num_episodes, seed=seed)` from episode `start` on, in consecutive chunks of `batch_size`.

        The last chunk is smaller when `batch_size` does not divide what is left.
        """
        if batch_size < 1 or start < 0:
            raise ValueError(f"batch_size must be >= 1 and start >= 0; got {batch_size} and {start}.")
        for start in range(int(start), int(num_episodes), batch_size):
            yield self._host_batch(int(seed), 0, range(start, min(start + batch_size, int(num_episodes))))

    def with_seed(self, seed: int) -> "EpisodeSampler":
        """The same sampler (same source, shapes, augment, weights) with another seed.

        E.g. a fixed evaluation set on the device path: with `ev = sampler.with_seed(1234)`,
        `ev.device_sample(state, 0, jnp.arange(i, i + b))` over consecutive chunks draws the same
        episodes on every call; `state` (`device_state()`) is shared with the training sampler.
        """
        return EpisodeSampler(self.source, ways=self.ways, shots=self.shots, queries=self.queries, seed=seed,
                              augment=self.augment, class_weights=self.class_weights,
                              class_examples=self.class_examples, groups=self.class_groups,
                              within_group=self.within_group)

    # -------------------------------------------------------------- device path
    @property
    def device_nbytes(self) -> int:
        """Bytes of `device_state()` (the padded split)."""
        counts = self.source.counts
        return int(len(counts) * counts.max() * math.prod(self.source.example_shape) * self.source.dtype.itemsize)

    @property
    def fits_on_device(self) -> bool:
        """Whether the padded split is small enough (<= DEVICE_BYTES_LIMIT) for the on-device path."""
        return self.device_nbytes <= DEVICE_BYTES_LIMIT

    def device_state(self, sharding=None) -> DeviceState:
        """The split as device arrays (`DeviceState`); pass it as an ARGUMENT of the jitted step.

        `sharding`: optional, e.g. `fewjax.data.replicated(mesh)` on several devices.
        """
        examples, counts = self.source.padded()
        if self.class_weights is None:
            log_w = np.zeros(len(counts), np.float32)
        else:
            with np.errstate(divide="ignore"):
                log_w = np.log(self.class_weights).astype(np.float32)
        state = DeviceState(examples, counts, log_w)
        return jax.device_put(state, sharding) if sharding is not None else jax.device_put(state)

    def device_sample(self, state: DeviceState, step, task_indices) -> Task:
        """A meta-batch drawn with jax.random from `state`: pure and jittable.

        `step`: int or scalar int array; `task_indices`: 1-D int array (or a
        Python int n = arange(n)). Task `i` uses key
        `fold_in(fold_in(key(seed), step), i)`.
        """
        return self.device_sample_with_classes(state, step, task_indices)[0]

    def device_sample_with_classes(self, state: DeviceState, step, task_indices) -> tuple[Task, jax.Array]:
        """`device_sample(state, step, task_indices)` and the source class of each label, `[B, ways]` int32.

        Row `b`, column `k` is the class whose examples carry label `k` in task
        `b` (what `fewjax.data.task_sampling` needs to credit a task's loss to
        its classes). The tasks are exactly those of `device_sample`.
        """
        if isinstance(task_indices, (int, np.integer)):
            task_indices = jnp.arange(int(task_indices))
        task_indices = jnp.asarray(task_indices)
        if task_indices.ndim != 1:
            raise ValueError(f"task_indices must be 1-D; got shape {task_indices.shape}.")
        base = jax.random.fold_in(jax.random.key(self.seed), step)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(task_indices.astype(jnp.uint32))
        x, classes = jax.vmap(functools.partial(self._device_task, state))(keys)
        x = self._with_class_examples(x, classes, jnp)
        return self._split(x, task_indices.shape[0], jnp), classes.astype(jnp.int32)

    def _device_task(self, state: DeviceState, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_cls, k_ex, k_aug = jax.random.split(key, 3)
        num_classes, max_n = state.examples.shape[:2]
        # Gumbel top-k = sampling without replacement with probabilities ~ weights, in a random order.
        scores = jax.random.gumbel(k_cls, (num_classes,)) + state.log_weights
        if self._group_members is not None:  # some tasks keep the classes of one group (k_cls's own draws)
            k_use, k_group = jax.random.split(jax.random.fold_in(k_cls, 1))
            keep = jnp.asarray(self._in_group)[jax.random.randint(k_group, (), 0, len(self._group_members))]
            keep = keep | (jax.random.uniform(k_use) >= self.within_group)
            scores = jnp.where(keep, scores, -jnp.inf)
        _, classes = jax.lax.top_k(scores, self.ways)
        u = jax.random.uniform(k_ex, (self.ways, max_n))
        u = jnp.where(jnp.arange(max_n)[None, :] < state.counts[classes][:, None], u, -1.0)
        _, examples = jax.lax.top_k(u, self.shots + self.queries)
        x = _to_float(state.examples[classes[:, None], examples])  # [ways, n, *shape]
        if self.augment is not None:
            x = self.augment(k_aug, x)
        return x, classes

    def __repr__(self) -> str:
        return (f"EpisodeSampler(ways={self.ways}, shots={self.shots}, queries={self.queries}, seed={self.seed}, "
                f"source={self.source!r})")


class ClassesTooSmall(ValueError):
    """Some classes hold fewer than `shots + queries` examples; `smallest` (of class `name`) and `short` (how many
    classes) say which (callers re-raise it in their own terms)."""

    def __init__(self, shots: int, queries: int, name: str, smallest: int, short: int):
        self.shots, self.queries, self.name, self.smallest, self.short = shots, queries, name, smallest, short
        super().__init__(
            f"shots + queries = {shots} + {queries} = {shots + queries} but class {name!r} has only {smallest} "
            f"examples ({short} classes have fewer than {shots + queries}): lower shots/queries to at most "
            f"{smallest} in total, or drop those classes (ArraySource.subset) or give them class_weights of 0.")


class GroupsTooSmall(ValueError):
    """No group has `ways` classes; `largest` is the largest group's size (callers re-raise it in their own terms)."""

    def __init__(self, ways: int, largest: int):
        self.ways, self.largest = ways, largest
        super().__init__(f"ways={ways} but no group has that many classes (largest: {largest}): lower ways.")


def group_members(groups: Sequence[str], eligible: np.ndarray, ways: int) -> list[np.ndarray]:
    """The `eligible` class ids of each group (`groups`: one name per class) that has at least `ways` of them."""
    groups = np.asarray([str(g) for g in groups])
    names, group_of = np.unique(groups[eligible], return_inverse=True)
    members = [eligible[group_of == g] for g in range(len(names))]
    large = [m for m in members if len(m) >= ways]
    if not large:
        raise GroupsTooSmall(ways, max(map(len, members)))
    return large


def _within_group_members(groups, eligible, num_classes: int, ways: int, within_group: float):
    """`group_members` when some tasks are drawn within a group, else None; the arguments checked."""
    if not 0.0 <= within_group <= 1.0:
        raise ValueError(f"within_group must be a probability in [0, 1]; got {within_group!r}.")
    if groups is None:
        if within_group:
            raise ValueError(f"within_group={within_group} draws tasks within one group: pass groups, one per class.")
        return None
    if len(groups) != num_classes:
        raise ValueError(f"groups must name one group per class ({num_classes}); got {len(groups)}.")
    return group_members(groups, eligible, ways) if within_group else None


def episodes(source: ArraySource, *, ways: int, shots: int, queries: int, seed: int,
             augment: Callable | None = None, class_weights=None, class_examples=None,
             groups: Sequence[str] | None = None, within_group: float = 0.0) -> EpisodeSampler:
    """An `EpisodeSampler` over `source` (see the module docstring).

    Args:
      source: an `ArraySource` (or anything with its interface).
      ways, shots, queries: classes per task, support and query examples per class.
      seed: non-negative int; tasks are a function of (seed, step, task index).
      augment: optional jittable `augment(key, x[ways, shots+queries, ...]) -> x`
        (see `fewjax.data.augment`), applied to float32 images on both paths.
      class_weights: optional `[num_classes]` non-negative weights for drawing
        classes (without replacement, probability ~ weight); None = uniform.
      class_examples: optional `[num_classes, *example_shape]`, one more support example per class (e.g. its
        name as text): each task's support holds `shots + 1` examples per class, the class's own example after
        the drawn ones (never augmented, never a query).
      groups: optional, the group of each class (Omniglot: its alphabet, `fewjax.data.within_group.alphabet_of`).
      within_group: the probability that a task draws all its classes from one group (uniformly over the groups
        with at least `ways` classes): hard negatives, as Lake's within-alphabet test has them. 0 = never.

    Raises:
      ValueError: before any compilation, when ways exceeds the number of
        classes, or shots + queries exceeds a class's examples (naming it).
    """
    return EpisodeSampler(source, ways=ways, shots=shots, queries=queries, seed=seed,
                          augment=augment, class_weights=class_weights, class_examples=class_examples,
                          groups=groups, within_group=within_group)
