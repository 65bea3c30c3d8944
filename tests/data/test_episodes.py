"""Episode sampler invariants on a small synthetic source (host and device paths)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.data import ArraySource, augment, episodes

NUM_CLASSES = 12


def make_source(dtype=np.uint8):
    # Class c has 6 + c % 4 examples; example value encodes (class, index) so tasks can be decoded.
    xs, ys = [], []
    for c in range(NUM_CLASSES):
        for i in range(6 + c % 4):
            xs.append(np.full((4, 4, 1), c * 16 + i, dtype))
            ys.append(c)
    return ArraySource(np.stack(xs), np.array(ys), [f"class{c}" for c in range(NUM_CLASSES)])


def decode(x):
    """Example ids (class*16 + index) from images, whatever the dtype."""
    x = np.asarray(x)
    v = x[..., 0, 0, 0]
    return np.rint(v * 255).astype(int) if x.dtype == np.float32 else v.astype(int)


def check_task(task, ways, shots, queries):
    sx, sy, qx, qy = task.support.x, task.support.y, task.query.x, task.query.y
    assert sx.shape == (ways * shots, 4, 4, 1) and qx.shape == (ways * queries, 4, 4, 1)
    assert sx.dtype == np.float32 and float(np.max(sx)) <= 1.0
    np.testing.assert_array_equal(sy, np.repeat(np.arange(ways), shots))
    np.testing.assert_array_equal(qy, np.repeat(np.arange(ways), queries))
    s_ids, q_ids = decode(sx), decode(qx)
    assert len(set(s_ids) | set(q_ids)) == len(s_ids) + len(q_ids), "repeat or support/query overlap"
    s_cls, q_cls = s_ids // 16, q_ids // 16
    for label in range(ways):  # each label is one source class, same in support and query
        cls = set(s_cls[sy == label]) | set(q_cls[qy == label])
        assert len(cls) == 1
    assert len(set(s_cls)) == ways  # classes without replacement
    return s_cls[::shots]


@pytest.mark.parametrize("ways,shots,queries", [(5, 1, 3), (12, 2, 4), (3, 5, 1)])
def test_host_sample_invariants(ways, shots, queries):
    sampler = episodes(make_source(), ways=ways, shots=shots, queries=queries, seed=0)
    for step in range(5):
        check_task(sampler.sample(step, 1), ways, shots, queries)


@pytest.fixture(scope="module")
def device_case():
    """One sampler and ONE compiled device_sample shared by the device tests (compiles are slow on 2 cores)."""
    sampler = episodes(make_source(), ways=5, shots=2, queries=4, seed=3)
    return sampler, sampler.device_state(), jax.jit(sampler.device_sample)


def test_device_sample_invariants_and_replay(device_case):
    sampler, state, fn = device_case
    first = fn(state, 4, jnp.arange(6))
    jax.tree.map(np.testing.assert_array_equal, first, fn(state, 4, jnp.arange(6)))
    for b in range(6):
        check_task(jax.tree.map(lambda a: np.asarray(a[b]), first), 5, 2, 4)
    assert sampler.fits_on_device and sampler.device_nbytes == NUM_CLASSES * 9 * 16
    assert state.examples.dtype == jnp.uint8 and first.support.x.dtype == jnp.float32


def test_host_determinism_depends_on_seed_step_index_only():
    sampler = episodes(make_source(), ways=5, shots=1, queries=2, seed=7)
    a = sampler.sample(3, 2)
    sampler.sample(0, 0)  # history must not matter
    b = episodes(make_source(), ways=5, shots=1, queries=2, seed=7).sample(3, 2)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a.support.x, sampler.sample(4, 2).support.x)
    assert not np.array_equal(a.support.x, sampler.sample(3, 3).support.x)
    other = episodes(make_source(), ways=5, shots=1, queries=2, seed=8).sample(3, 2)
    assert not np.array_equal(a.support.x, other.support.x)


def test_sample_batch_slices_equal_full_batch():
    sampler = episodes(make_source(), ways=4, shots=2, queries=2, seed=1)
    full = sampler.sample_batch(9, 4)
    part = sampler.sample_batch(9, [2, 3])
    jax.tree.map(lambda f, p: np.testing.assert_array_equal(f[2:4], p), full, part)
    jax.tree.map(lambda f, s: np.testing.assert_array_equal(f[1], s), full, sampler.sample(9, 1))


def test_device_slices_and_steps(device_case):
    sampler, state, fn = device_case
    full = fn(state, 2, jnp.arange(4))
    part = fn(state, jnp.int32(2), jnp.array([2, 3, 0, 1]))
    jax.tree.map(lambda f, p: np.testing.assert_array_equal(np.asarray(f)[[2, 3, 0, 1]], p), full, part)
    assert not np.array_equal(full.support.x, fn(state, 3, jnp.arange(4)).support.x)
    assert not np.array_equal(full.support.x[0], full.support.x[1])
    other_seed = episodes(make_source(), ways=5, shots=2, queries=4, seed=4)
    assert not np.array_equal(full.support.x, jax.jit(other_seed.device_sample)(state, 2, jnp.arange(4)).support.x)


def test_label_assignment_is_random():
    sampler = episodes(make_source(), ways=3, shots=1, queries=1, seed=0)
    firsts = {tuple(check_task(sampler.sample(s), 3, 1, 1)) for s in range(30)}
    assert any(list(t) != sorted(t) for t in firsts)


def test_classes_cover_source_uniformly_enough():
    sampler = episodes(make_source(), ways=2, shots=1, queries=1, seed=0)
    seen = np.concatenate([decode(sampler.sample(s).support.x) // 16 for s in range(200)])
    counts = np.bincount(seen, minlength=NUM_CLASSES)
    assert counts.min() > 15  # expectation 400 / 12 = 33


def class_weights():
    weights = np.ones(NUM_CLASSES)
    weights[:4] = 0.0
    weights[4] = 50.0
    return weights


def check_weighted(x):
    cls = decode(x) // 16
    assert cls.min() >= 4
    assert np.mean(np.any(cls == 4, axis=1)) > 0.9


def test_class_weights_host():
    sampler = episodes(make_source(), ways=5, shots=2, queries=4, seed=0, class_weights=class_weights())
    check_weighted(sampler.sample_batch(0, 100).support.x)


def test_class_weights_device_live_in_state(device_case):
    # the weights are part of the device state: re-weighting needs no recompilation
    _, _, fn = device_case
    weighted = episodes(make_source(), ways=5, shots=2, queries=4, seed=0, class_weights=class_weights())
    check_weighted(fn(weighted.device_state(), 0, jnp.arange(100)).support.x)


def test_non_image_source_passes_dtype_through():
    tokens = np.arange(30 * 7, dtype=np.int32).reshape(30, 7)
    src = ArraySource(tokens, np.arange(30) % 3, ["x", "y", "z"])
    sampler = episodes(src, ways=3, shots=2, queries=3, seed=0)
    task = sampler.sample(0)
    assert task.support.x.dtype == np.int32 and task.support.x.shape == (6, 7)
    dev = jax.jit(sampler.device_sample)(sampler.device_state(), 0, jnp.arange(2))
    assert dev.query.x.dtype == jnp.int32 and dev.query.x.shape == (2, 9, 7)
    # row r of the source is tokens r*7 .. r*7+6 and belongs to class r % 3
    rows = np.asarray(dev.support.x)[..., 0] // 7  # [2, 6]
    cls = (rows % 3).reshape(2, 3, 2)
    assert np.all(cls[..., 0] == cls[..., 1])
    assert all(len(set(c)) == 3 for c in cls[..., 0])

def test_eval_set_fixed_and_batches_match():
    sampler = episodes(make_source(), ways=3, shots=1, queries=2, seed=0)
    a = sampler.eval_set(5, seed=123)
    b = episodes(make_source(), ways=3, shots=1, queries=2, seed=99).eval_set(5, seed=123)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    chunks = list(sampler.eval_batches(5, seed=123, batch_size=2))
    assert [c.support.x.shape[0] for c in chunks] == [2, 2, 1]
    jax.tree.map(lambda full, *parts: np.testing.assert_array_equal(full, np.concatenate(parts)), a, *chunks)
    # episode i is the same in a set of any size, and from any start: what a resumed evaluation relies on
    tail = list(sampler.eval_batches(5, seed=123, batch_size=2, start=3))
    assert [c.support.x.shape[0] for c in tail] == [2]
    jax.tree.map(lambda full, part, head: (np.testing.assert_array_equal(full[3:], part),
                                          np.testing.assert_array_equal(full[:3], head)),
                 a, tail[0], sampler.eval_set(3, seed=123))


def test_augment_applies_on_both_paths():
    src = ArraySource(np.random.default_rng(0).integers(0, 255, (40, 6, 6, 1), dtype=np.uint8),
                      np.arange(40) % 4, list("abcd"))
    plain = episodes(src, ways=2, shots=2, queries=2, seed=0)
    aug = episodes(src, ways=2, shots=2, queries=2, seed=0, augment=augment.random_flip(per="task"))
    changed = [not np.array_equal(plain.sample(s).support.x, aug.sample(s).support.x) for s in range(20)]
    assert 0 < sum(changed) < 20
    for s in range(20):  # a flip or nothing
        p, a = plain.sample(s).support.x, aug.sample(s).support.x
        assert np.array_equal(p, a) or np.array_equal(p[:, :, ::-1], a)
    dev = aug.device_sample(aug.device_state(), 0, jnp.arange(3))
    assert dev.support.x.shape == (3, 4, 6, 6, 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(ways=13, shots=1, queries=1), "ways=13 but the source has only 12 classes"),
        (dict(ways=5, shots=3, queries=4), "class 'class0' has only 6 examples"),
        (dict(ways=0, shots=1, queries=1), "ways must be an integer >= 1"),
        (dict(ways=2, shots=0, queries=1), "shots must be"),
    ],
)
def test_bad_configuration_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        episodes(make_source(), seed=0, **kwargs)


def test_bad_weights_and_sources():
    with pytest.raises(ValueError, match="one weight per class"):
        episodes(make_source(), ways=2, shots=1, queries=1, seed=0, class_weights=np.ones(3))
    with pytest.raises(ValueError, match="positive weight"):
        episodes(make_source(), ways=2, shots=1, queries=1, seed=0, class_weights=np.eye(NUM_CLASSES)[0])
    with pytest.raises(ValueError, match="has no examples"):
        ArraySource(np.zeros((3, 2)), np.array([0, 0, 2]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="labels must lie in"):
        ArraySource(np.zeros((3, 2)), np.array([0, 1, 5]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="one label per example"):
        ArraySource(np.zeros((3, 2)), np.array([0, 1]), ["a", "b"])


def test_array_source_accessors():
    src = make_source()
    assert src.num_classes == NUM_CLASSES and src.example_shape == (4, 4, 1) and src.dtype == np.uint8
    np.testing.assert_array_equal(src.counts, 6 + np.arange(NUM_CLASSES) % 4)
    np.testing.assert_array_equal(decode(src.class_examples(3)), 3 * 16 + np.arange(9))
    padded, counts = src.padded()
    assert padded.shape == (NUM_CLASSES, 9, 4, 4, 1) and counts.dtype == np.int32
    assert np.all(padded[0, 6:] == 0) and decode(padded[2, :8]).tolist() == [32 + i for i in range(8)]
    sub = src.subset([5, 1])
    assert sub.class_names == ("class5", "class1") and decode(sub.class_examples(1))[0] == 16


@pytest.mark.parametrize("path", ["host", "device"])
def test_class_examples_join_each_class_support_after_its_drawn_examples(path):
    source = make_source(np.int32)
    own = np.stack([np.full((4, 4, 1), 1000 + c, np.int32) for c in range(NUM_CLASSES)])  # e.g. a class's name
    sampler = episodes(source, ways=4, shots=2, queries=3, seed=5, class_examples=own)
    tasks = sampler.sample_batch(7, 3) if path == "host" else sampler.device_sample(sampler.device_state(), 7, 3)
    for b in range(3):
        sx, sy = np.asarray(tasks.support.x[b]), np.asarray(tasks.support.y[b])
        assert sx.shape == (4 * 3, 4, 4, 1) and tasks.query.x.shape[1:] == (4 * 3, 4, 4, 1)
        np.testing.assert_array_equal(sy, np.repeat(np.arange(4), 3))
        ids = decode(sx).reshape(4, 3)
        drawn_class = ids[:, :2] // 16
        assert (drawn_class == drawn_class[:, :1]).all()
        np.testing.assert_array_equal(ids[:, 2], 1000 + drawn_class[:, 0])  # the class's own example, last
        assert (decode(tasks.query.x[b]) < 1000).all()
    with pytest.raises(ValueError, match=r"class_examples must hold one example per class, shape \(12, 4, 4, 1\)"):
        episodes(source, ways=4, shots=2, queries=3, seed=5, class_examples=own[:3])


GROUPS = ["A"] * 6 + ["B"] * 4 + ["C"] * 2  # C has fewer classes than ways=3: never a whole task


def group_of_tasks(tasks, n):
    """The groups of each task's classes, a set per task."""
    return [{GROUPS[c] for c in check_task(jax.tree.map(lambda a: np.asarray(a[b]), tasks), 3, 1, 2)}
            for b in range(n)]


def grouped_tasks(path, within_group, n=400, **kwargs):
    sampler = episodes(make_source(), ways=3, shots=1, queries=2, seed=1, groups=GROUPS, within_group=within_group,
                       **kwargs)
    if path == "host":
        return sampler.sample_batch(5, n)
    return jax.jit(sampler.device_sample, static_argnums=2)(sampler.device_state(), 5, n)


@pytest.mark.parametrize("path", ["host", "device"])
def test_within_group_tasks_take_all_classes_from_one_large_enough_group(path):
    groups = group_of_tasks(grouped_tasks(path, 1.0), 400)
    assert all(len(g) == 1 for g in groups)
    counts = {name: sum(g == {name} for g in groups) for name in "ABC"}
    assert counts["C"] == 0 and counts["A"] > 150 and counts["B"] > 150  # groups uniformly, expectation 200


@pytest.mark.parametrize("path", ["host", "device"])
def test_within_group_probability_mixes_grouped_and_free_tasks(path):
    # free tasks fall in one group by chance with probability (C(6,3) + C(4,3)) / C(12,3) = 24 / 220
    one_group = np.mean([len(g) == 1 for g in group_of_tasks(grouped_tasks(path, 0.5), 400)])
    assert 0.45 < one_group < 0.67  # expectation 0.5 + 0.5 * 24 / 220 = 0.555


@pytest.mark.parametrize("path", ["host", "device"])
def test_within_group_zero_draws_the_ungrouped_tasks(path):
    plain = episodes(make_source(), ways=3, shots=1, queries=2, seed=1)
    expected = (plain.sample_batch(5, 20) if path == "host" else
                jax.jit(plain.device_sample, static_argnums=2)(plain.device_state(), 5, 20))
    jax.tree.map(np.testing.assert_array_equal, grouped_tasks(path, 0.0, n=20), expected)


def test_within_group_respects_class_weights_and_keeps_its_groups_under_with_seed():
    weights = np.ones(NUM_CLASSES)
    weights[:3] = 0.0  # group A keeps 3 eligible classes
    sampler = episodes(make_source(), ways=3, shots=1, queries=2, seed=1, groups=GROUPS, within_group=1.0,
                       class_weights=weights).with_seed(9)
    for tasks in (sampler.sample_batch(0, 100), sampler.device_sample(sampler.device_state(), 0, jnp.arange(100))):
        classes = np.asarray(decode(tasks.support.x)) // 16
        assert classes.min() >= 3 and all(len({GROUPS[c] for c in row}) == 1 for row in classes)


@pytest.mark.parametrize("kwargs,match", [
    (dict(within_group=0.5), "pass groups, one per class"),
    (dict(within_group=1.5, groups=GROUPS), r"within_group must be a probability in \[0, 1\]"),
    (dict(within_group=0.5, groups=GROUPS[:3]), r"groups must name one group per class \(12\); got 3"),
    (dict(within_group=0.5, groups=GROUPS, ways=7), r"ways=7 but no group has that many classes \(largest: 6\)"),
])
def test_within_group_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        episodes(make_source(), **{"ways": 3, "shots": 1, "queries": 2, "seed": 0, **kwargs})
