import numpy as np
import pytest
from PIL import Image

from fewjax.data import episodes, image_folder

CLASSES = [f"n{i:02d}" for i in range(10)]


@pytest.fixture
def root(tmp_path):
    for c, name in enumerate(CLASSES):
        (tmp_path / name).mkdir()
        for i in range(4 + c % 2):
            Image.fromarray(np.full((6, 5, 3), c * 20 + i, np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "n00" / "notes.txt").write_text("ignored")
    return tmp_path


def test_all_classes_values_and_sampling(root):
    src = image_folder(root)
    assert src.num_classes == 10 and src.class_names == tuple(CLASSES) and src.example_shape == (6, 5, 3)
    np.testing.assert_array_equal(src.counts, 4 + np.arange(10) % 2)
    assert src.class_examples(3)[1, 0, 0, 0] == 61
    task = episodes(src, ways=3, shots=2, queries=2, seed=0).sample(0)
    assert task.support.x.shape == (6, 6, 5, 3)


def test_grayscale_and_resize(root):
    src = image_folder(root, grayscale=True, image_size=4)
    assert src.example_shape == (4, 4, 1) and src.class_examples(2)[0, 0, 0, 0] == 40


def test_partition_is_seeded_disjoint_and_complete(root):
    part = {"train": 6, "val": 2, "test": 2}
    splits = {s: image_folder(root, split=s, partition=part, seed=1).class_names for s in part}
    assert [len(v) for v in splits.values()] == [6, 2, 2]
    assert sorted(sum(map(list, splits.values()), [])) == CLASSES
    assert image_folder(root, split="val", partition=part, seed=1).class_names == splits["val"]
    others = {image_folder(root, split="train", partition=part, seed=s).class_names for s in range(5)}
    assert len(others) > 1
    fractions = image_folder(root, split="train", partition={"train": 0.7, "test": 0.3}, seed=0)
    assert fractions.num_classes == 7


def test_split_files(root, tmp_path_factory):
    d = tmp_path_factory.mktemp("splits")
    (d / "test.txt").write_text("n03\nn07\n")
    src = image_folder(root, split="test", split_files=d)
    assert src.class_names == ("n03", "n07")
    assert image_folder(root, split="test", split_files={"test": d / "test.txt"}).num_classes == 2
    (d / "bad.txt").write_text("n03\nzebra\n")
    with pytest.raises(ValueError, match="names class 'zebra'"):
        image_folder(root, split="bad", split_files=d)


def test_mixed_sizes_need_image_size(root):
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(root / "n04" / "big.png")
    with pytest.raises(ValueError, match=r"mixed sizes.*image_size"):
        image_folder(root)
    assert image_folder(root, image_size=(6, 5)).example_shape == (6, 5, 3)


def test_bad_inputs(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs split_files"):
        image_folder(root, split="train")
    with pytest.raises(ValueError, match="not in partition"):
        image_folder(root, split="val", partition={"train": 1.0})
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        image_folder(root)
