import io
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from fewjax.data import episodes, image_folder, omniglot

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
    with pytest.warns(RuntimeWarning, match="mixes backgrounds"):  # flat images, some light, some dark
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


@pytest.fixture(scope="module")
def omniglot_pngs(omniglot_dir, tmp_path_factory):
    """Two real characters of images_evaluation.zip, as a zip in the official layout and as a folder of its PNGs."""
    out = tmp_path_factory.mktemp("omniglot_pngs")
    (out / "zip").mkdir()
    with zipfile.ZipFile(omniglot_dir / "images_evaluation.zip") as z:
        members = sorted(m for m in z.namelist() if m.endswith(".png"))
        chars = sorted({"/".join(m.split("/")[-3:-1]) for m in members})[:2]
        mine = [m for m in members if "/".join(m.split("/")[-3:-1]) in chars]
        with zipfile.ZipFile(out / "zip" / "images_evaluation.zip", "w") as small:
            for m in mine:
                small.writestr(m, z.read(m))
                folder = out / "light" / m.split("/")[-3] / m.split("/")[-2]
                folder.mkdir(parents=True, exist_ok=True)
                (folder / m.split("/")[-1]).write_bytes(z.read(m))
                dark = out / "dark" / m.split("/")[-3] / m.split("/")[-2]  # the same characters, light on dark
                dark.mkdir(parents=True, exist_ok=True)
                with Image.open(io.BytesIO(z.read(m))) as im:
                    Image.fromarray(255 - np.asarray(im.convert("L"))).save(dark / m.split("/")[-1])
    return out, chars


def flat_folder(root):
    """root/<alphabet>/<character>/<png> as root_flat/<alphabet>__<character>/<png> (image_folder's layout)."""
    flat = root.with_name(root.name + "_flat")
    if not flat.exists():
        for png in sorted(root.glob("*/*/*.png")):
            (flat / f"{png.parts[-3]}__{png.parts[-2]}").mkdir(parents=True, exist_ok=True)
            (flat / f"{png.parts[-3]}__{png.parts[-2]}" / png.name).write_bytes(png.read_bytes())
    return flat


def test_folder_of_omniglot_pngs_gives_the_builtin_arrays(omniglot_pngs, monkeypatch):
    """Ink is high in both paths: the folder used to be read as it is (background 255), the built-in inverted."""
    out, chars = omniglot_pngs
    monkeypatch.setenv("FEWJAX_CACHE_DIR", str(out / "cache"))
    builtin = omniglot("evaluation", data_dir=out / "zip", download=False)
    with pytest.warns(RuntimeWarning, match=r"40 of 40 images have a light background; inverting"):
        folder = image_folder(flat_folder(out / "light"), grayscale=True, image_size=28)
    assert folder.class_names == tuple(c.replace("/", "__") for c in builtin.class_names)
    for c in range(len(chars)):
        np.testing.assert_array_equal(folder.class_examples(c), builtin.class_examples(c))
    assert folder.class_examples(0).mean() < 60  # mostly background, now low

    from fewjax.experiment.config import base_config
    from fewjax.experiment.data import make_source

    config = base_config()  # evaluate.py --data FOLDER on an Omniglot conv4 checkpoint
    config.dataset, config.model.name = "omniglot", "conv4"
    with pytest.warns(RuntimeWarning, match="inverting"):
        via_evaluate = make_source(config, "test", data_path=str(flat_folder(out / "light")))
    np.testing.assert_array_equal(via_evaluate.class_examples(1), builtin.class_examples(1))
    kept = make_source(config, "test", data_path=str(flat_folder(out / "light")), invert=False)  # --invert false
    np.testing.assert_array_equal(kept.class_examples(1), 255 - builtin.class_examples(1))


def test_dark_or_light_background_gives_the_same_arrays(omniglot_pngs):
    out, _ = omniglot_pngs
    with pytest.warns(RuntimeWarning):
        light = image_folder(flat_folder(out / "light"), grayscale=True, image_size=28)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already ink-high: nothing to say
        dark = image_folder(flat_folder(out / "dark"), grayscale=True, image_size=28)
    for c in range(light.num_classes):  # equal up to the resize's rounding (a tie rounds up on both sides)
        diff = np.abs(dark.class_examples(c).astype(int) - light.class_examples(c))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    kept = image_folder(flat_folder(out / "light"), grayscale=True, image_size=28, invert=False)
    np.testing.assert_array_equal(kept.class_examples(0), 255 - light.class_examples(0))
    forced = image_folder(flat_folder(out / "dark"), grayscale=True, image_size=28, invert=True)
    np.testing.assert_array_equal(forced.class_examples(0), 255 - dark.class_examples(0))


def test_invert_option_and_rgb(root, tmp_path):
    rgb = image_folder(root)  # RGB: "auto" never inverts
    np.testing.assert_array_equal(image_folder(root, invert=True).class_examples(1), 255 - rgb.class_examples(1))
    with pytest.raises(ValueError, match="invert='yes'"):
        image_folder(root, invert="yes")
    (tmp_path / "data.csv").write_text("text,label\n")
    with pytest.raises(NotADirectoryError, match="is a file"):
        image_folder(tmp_path / "data.csv")


PRESPLIT = {"train": ["a0", "a1", "a2"], "val": ["b0", "b1"], "test": ["c0", "c1"]}


@pytest.fixture
def presplit_root(tmp_path):
    """root/<split>/<class>/<image>, RGB of mixed sizes (miniImageNet's distributed layout)."""
    rng = np.random.default_rng(0)
    for split, names in PRESPLIT.items():
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            for i, (h, w) in enumerate([(10, 12), (7, 7), (16, 9)]):
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    tmp_path / split / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return tmp_path


def test_presplit_folder_reads_each_split_from_its_own_folder(presplit_root):
    from fewjax.data import split_folders

    assert split_folders(presplit_root) == {s: presplit_root / s for s in PRESPLIT}
    sources = {s: image_folder(presplit_root, split=s, image_size=8) for s in PRESPLIT}
    for s, src in sources.items():
        assert src.class_names == tuple(PRESPLIT[s])  # exactly that split's folders, nothing partitioned
        assert src.example_shape == (8, 8, 3) and src.dtype == np.uint8
        np.testing.assert_array_equal(src.counts, [3] * len(PRESPLIT[s]))  # every size resized, none dropped
    names = [set(src.class_names) for src in sources.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    rect = image_folder(presplit_root, split="val", image_size=(6, 10))
    assert rect.example_shape == (6, 10, 3)
    with pytest.raises(ValueError, match="mixed sizes"):
        image_folder(presplit_root, split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # RGB photos are never inverted, nothing to warn about
        image_folder(presplit_root, split="test", image_size=8)


def test_presplit_folder_errors(presplit_root):
    with pytest.raises(ValueError, match=r"pre-split.*pass split="):
        image_folder(presplit_root, image_size=8)
    with pytest.raises(ValueError, match=r"drop split_files / partition"):
        image_folder(presplit_root, split="train", partition={"train": 0.5, "val": 0.5}, image_size=8)
    (presplit_root / "test").rename(presplit_root / "elsewhere")
    with pytest.raises(ValueError, match=r"has train/, val/ but no test/: a pre-split image folder needs all"):
        image_folder(presplit_root, split="train", image_size=8)
    (presplit_root / "val").rename(presplit_root / "val_old")
    with pytest.raises(ValueError, match=r"has train/ but no val/, test/"):
        image_folder(presplit_root, split="train", image_size=8)


def test_presplit_overlapping_classes_warn(presplit_root):
    from fewjax.data import split_folders

    (presplit_root / "test" / "a0").mkdir()
    with pytest.warns(RuntimeWarning, match=r"in both train/ and test/ \(e.g. 'a0'\)"):
        split_folders(presplit_root)


def test_make_source_reads_a_presplit_data_dir(presplit_root, image_root):
    from fewjax.experiment.config import base_config
    from fewjax.experiment.data import make_source

    config = base_config()
    config.dataset, config.data_dir, config.image_size = "image_folder", str(presplit_root), 8
    for s, names in PRESPLIT.items():
        src = make_source(config, s)
        assert src.class_names == tuple(names) and src.example_shape == (8, 8, 3)
    assert make_source(config, "test", data_path=str(presplit_root)).class_names == tuple(PRESPLIT["test"])
    config.data_dir = str(image_root)  # flat: the seeded partition, as before
    flat = {s: set(make_source(config, s).class_names) for s in PRESPLIT}
    assert [len(v) for v in flat.values()] == [16, 4, 4] and len(set.union(*flat.values())) == 24
    (presplit_root / "val").rename(presplit_root / "validation")
    config.data_dir = str(presplit_root)
    with pytest.raises(ValueError, match=r"config.data_dir=.*has train/, test/ but no val/"):
        make_source(config, "train")
