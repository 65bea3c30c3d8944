"""Omniglot loader logic on tiny synthetic zips in the official layout (fast; no real data needed)."""
import io
import os
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from fewjax.data import omniglot

MOD = sys.modules["fewjax.data.omniglot"]


def make_zip(path, stem, characters):
    with zipfile.ZipFile(path, "w") as z:
        for alphabet, char, pattern in characters:
            for drawer in range(1, 21):
                img = np.ones((105, 105), bool)  # white background, black (False) strokes
                img[pattern] = False
                buf = io.BytesIO()
                Image.fromarray(img).convert("1").save(buf, format="PNG")
                z.writestr(f"{stem}/{alphabet}/{char}/0001_{drawer:02d}.png", buf.getvalue())


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    left_bar = (slice(0, 105), slice(0, 30))
    top_bar = (slice(0, 30), slice(0, 105))
    make_zip(data / "images_background.zip", "images_background",
             [("Alpha", "character01", left_bar), ("Alpha", "character02", top_bar)])
    make_zip(data / "images_evaluation.zip", "images_evaluation", [("Beta", "character01", top_bar)])
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.txt").write_text("Alpha/character01/rot000\nAlpha/character01/rot090\nBeta/character01/rot180\n")
    (splits / "val.txt").write_text("Alpha/character02/rot000\nGamma/character09/rot000\n")
    monkeypatch.setattr(MOD, "SPLIT_DIR", splits)
    monkeypatch.delenv("FEWJAX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return data


def test_lake_split_values_and_cache_beside_zip(tiny, monkeypatch):
    src = omniglot("background", data_dir=tiny, download=False)
    assert src.num_classes == 2 and src.class_names == ("Alpha/character01", "Alpha/character02")
    x = src.class_examples(0)[0, :, :, 0]
    assert x.shape == (28, 28) and x.dtype == np.uint8
    assert x[:, :7].min() >= 250 and x[:, 9:].max() <= 5  # ink (left bar) = 255, background = 0
    assert 5 < x[0, 8] < 250  # antialiased edge (30 px of 105 = 8 px of 28)
    assert len(list(tiny.glob("images_background-28px-*.npz"))) == 1
    monkeypatch.setattr(MOD, "_decode_zip", lambda *a: pytest.fail("decoded again instead of using the cache"))
    again = omniglot("background", data_dir=tiny, download=False)
    np.testing.assert_array_equal(again.class_examples(1), src.class_examples(1))


def test_vinyals_style_rotations(tiny):
    src = omniglot("train", data_dir=tiny, download=False, image_size=14)
    assert src.num_classes == 3 and src.example_shape == (14, 14, 1)
    rot0, rot90, beta180 = (src.class_examples(c)[0, :, :, 0] for c in range(3))
    np.testing.assert_array_equal(np.rot90(rot0), rot90)
    assert rot90[-3:, :].min() >= 250  # left bar rotated counter-clockwise -> bottom bar
    assert beta180[-3:, :].min() >= 250 and beta180[:3, :].max() <= 5  # top bar rotated 180 -> bottom


def test_lake_background_rotations_are_classes_of_the_background_characters_only(tiny):
    plain = omniglot("background", data_dir=tiny, download=False, image_size=14)
    src = omniglot("background_rotations", data_dir=tiny, download=False, image_size=14)
    assert src.num_classes == 8 and np.all(src.counts == 20)
    assert src.class_names[:5] == ("Alpha/character01/rot000", "Alpha/character01/rot090", "Alpha/character01/rot180",
                                   "Alpha/character01/rot270", "Alpha/character02/rot000")
    for c in range(8):
        character, quarter_turns = divmod(c, 4)
        np.testing.assert_array_equal(src.class_examples(c),
                                      np.rot90(plain.class_examples(character), quarter_turns, axes=(1, 2)))


def test_split_naming_unknown_class(tiny):
    with pytest.raises(ValueError, match="names class 'Gamma/character09/rot000'"):
        omniglot("val", data_dir=tiny, download=False)


def test_read_only_data_dir_caches_in_user_cache(tiny, tmp_path):
    os.chmod(tiny, 0o555)
    try:
        src = omniglot("evaluation", data_dir=tiny, download=False)
    finally:
        os.chmod(tiny, 0o755)
    assert src.num_classes == 1
    assert not list(tiny.glob("*.npz"))
    assert len(list((tmp_path / "xdg" / "fewjax" / "omniglot").glob("images_evaluation-28px-*.npz"))) == 1


def test_cache_dir_env_overrides(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWJAX_CACHE_DIR", str(tmp_path / "elsewhere"))
    omniglot("evaluation", data_dir=tiny, download=False)
    assert not list(tiny.glob("*.npz")) and len(list((tmp_path / "elsewhere").glob("*.npz"))) == 1


def test_damaged_member_is_named(tiny):
    with zipfile.ZipFile(tiny / "images_evaluation.zip", "a") as z:
        z.writestr("images_evaluation/Beta/character02/0002_01.png", b"garbage")
    with pytest.raises(ValueError, match="character02 has 1 images"):
        omniglot("evaluation", data_dir=tiny, download=False)
