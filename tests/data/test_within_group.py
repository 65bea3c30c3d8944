"""Lake's within-alphabet episodes: one group per episode, support and query from different drawers."""
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from fewjax.data import ArraySource, omniglot
from fewjax.data.within_group import alphabet_of, within_group_episodes

GROUPS, CLASSES_PER_GROUP, DRAWERS = 4, 6, 5


def coded_source():
    """Example value = 10 * class + drawer, so every drawn image says where it came from."""
    classes = GROUPS * CLASSES_PER_GROUP
    x = (10 * np.arange(classes)[:, None] + np.arange(DRAWERS)[None, :]).reshape(-1, 1).astype(np.float32)
    names = [f"alpha{g}/character{c:02d}" for g in range(GROUPS) for c in range(CLASSES_PER_GROUP)]
    return ArraySource(x, np.repeat(np.arange(classes), DRAWERS), names)


def origins(batch):
    code = np.asarray(batch.x[..., 0]).round().astype(int)
    return code // 10, code % 10  # class, drawer


@pytest.mark.parametrize("shots,queries", [(1, 1), (2, 3)])
def test_one_group_per_task_and_disjoint_drawers(shots, queries):
    src = coded_source()
    sampler = within_group_episodes(src, groups=[alphabet_of(n) for n in src.class_names], ways=4, shots=shots,
                                    queries=queries, seed=0)
    seen_groups = set()
    for step in range(30):
        task = sampler.sample(step)
        (s_cls, s_drw), (q_cls, q_drw) = origins(task.support), origins(task.query)
        assert len(set(s_cls // CLASSES_PER_GROUP) | set(q_cls // CLASSES_PER_GROUP)) == 1
        seen_groups |= set(s_cls // CLASSES_PER_GROUP)
        assert len(set(s_cls)) == 4 and set(q_cls) == set(s_cls)
        assert not set(s_drw) & set(q_drw)  # support and query drawn by different people
        assert len(set(s_drw)) == shots and len(set(q_drw)) == queries  # the same drawers for every class
        for label in range(4):  # labels follow classes in both sets
            assert len(set(s_cls[task.support.y == label]) | set(q_cls[task.query.y == label])) == 1
    assert seen_groups == set(range(GROUPS))
    again = sampler.sample(7)
    np.testing.assert_array_equal(again.query.x, sampler.sample(7).query.x)


def test_groups_too_small_and_too_few_drawers_are_clear_errors():
    src = coded_source()
    groups = [alphabet_of(n) for n in src.class_names]
    with pytest.raises(ValueError, match="no group has that many classes"):
        within_group_episodes(src, groups=groups, ways=7, shots=1, queries=1, seed=0)
    with pytest.raises(ValueError, match="shots \\+ queries"):
        within_group_episodes(src, groups=groups, ways=2, shots=3, queries=3, seed=0)
    with pytest.raises(ValueError, match="one group per class"):
        within_group_episodes(src, groups=groups[:-1], ways=2, shots=1, queries=1, seed=0)


def test_omniglot_keeps_drawer_order(tmp_path, monkeypatch):
    """Example j of every character is drawer j+1 (a bar of drawer-dependent width), whatever the zip order."""
    monkeypatch.setenv("FEWJAX_CACHE_DIR", str(tmp_path / "cache"))
    with zipfile.ZipFile(tmp_path / "images_evaluation.zip", "w") as z:
        for char in ("character02", "character01"):
            for drawer in reversed(range(1, 21)):
                img = np.ones((105, 105), bool)
                img[:, : 5 * drawer] = False  # ink
                buf = io.BytesIO()
                Image.fromarray(img).convert("1").save(buf, format="PNG")
                z.writestr(f"images_evaluation/Beta/{char}/0042_{drawer:02d}.png", buf.getvalue())
    src = omniglot("evaluation", data_dir=tmp_path, download=False, image_size=105)
    ink = src.gather(np.zeros((1, 1), int), np.arange(20)[None, :])[0, :, 52, :, 0].mean(axis=-1)
    assert np.all(np.diff(ink) > 0)
