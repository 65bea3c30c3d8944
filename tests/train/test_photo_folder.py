"""Photos end to end: a pre-split RGB folder (miniImageNet's layout) trains and evaluates with the photo
augmentations on, and the miniImageNet presets validate with a data_dir."""
import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewjax.eval.workdir import evaluate_workdir
from fewjax.experiment.config import FlagError, validate
from fewjax.experiment.data import make_sampler
from fewjax.experiment.records import describe
from fewjax.train import train_and_evaluate
from tests.conftest import tiny_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = {"miniimagenet_protonet": ["5w1s", "5w5s", "resnet12_5w1s", "resnet12_5w5s"],
           "miniimagenet_maml": ["5w1s", "5w5s"]}


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory):
    """root/{train,val,test}/<class>/<image>: 6/3/3 classes of 4 RGB JPEGs and PNGs of mixed sizes, each class a
    colour of its own."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        for c in range(n):
            colour = rng.integers(0, 256, 3)
            (root / split / f"{split}{c}").mkdir(parents=True)
            for i, (h, w) in enumerate([(20, 24), (18, 18), (30, 22), (16, 16)]):
                img = np.clip(colour + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / f"{split}{c}" / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def test_protonet_trains_and_evaluates_on_a_presplit_photo_folder(photo_root, tmp_path):
    config = tiny_config(photo_root, "protonet", image_size=16, total_steps=2, eval_every=2, checkpoint_every=2,
                         published="3-way 1-shot: a published number", published_setting="3w1s", **{
                             "augment.resized_crop": True, "augment.crop_min_scale": 0.5, "augment.flip": True,
                             "augment.color_jitter": 0.4})
    validate(config)
    sampler = make_sampler(config, "train", seed=0)
    assert sampler.augment is not None and sampler.source.class_names == tuple(f"train{c}" for c in range(6))
    assert sampler.sample(0).support.x.shape[-3:] == (16, 16, 3)  # RGB, every size resized to image_size
    assert make_sampler(config, "test", seed=0).augment is None

    record = train_and_evaluate(config, tmp_path, progress=False)
    assert record["episodes"] == 6 and 0.0 <= record["accuracy"] <= 1.0
    assert record["published"] == "3-way 1-shot: a published number"  # beside the measured accuracy
    flags = types.SimpleNamespace(workdir=str(tmp_path), checkpoint="best", split="test", episodes=6, batch_size=3,
                                  ways=None, shots=None, queries=None, inner_steps=None, data=None, data_dir=None,
                                  ema=False, text_column=None, label_column=None, within_alphabet=None)
    evaluated = evaluate_workdir(flags)
    assert evaluated["accuracy"] == pytest.approx(record["accuracy"])  # same checkpoint, same seeded episodes
    assert evaluated["published"] == record["published"]
    assert json.loads((tmp_path / "eval_test.json").read_text())["published"] == record["published"]
    on_own_folder = evaluate_workdir(types.SimpleNamespace(**{**vars(flags), "data": str(photo_root / "test")}),
                                     save=False)
    assert on_own_folder["data"] == str(photo_root / "test") and "published" not in on_own_folder
    two_shot = evaluate_workdir(types.SimpleNamespace(**{**vars(flags), "shots": 2}), save=False)
    assert two_shot["shots"] == 2 and "published" not in two_shot  # the 3w1s figure is no reference for 3w2s
    with pytest.raises(FlagError, match="--inner_steps=5: protonet adapts nothing per episode"):
        evaluate_workdir(types.SimpleNamespace(**{**vars(flags), "inner_steps": 5}), save=False)
    val = describe(config, split="val", checkpoint="best", step=2, result={"accuracy": 0.5})
    assert "published" not in val  # the published number is a test result


def load(name):
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, preset", [(n, p) for n, ps in PRESETS.items() for p in ps])
def test_miniimagenet_presets_validate_with_a_data_dir(name, preset, photo_root):
    config = load(name).get_config(preset)
    config.data_dir = str(photo_root)
    validate(config)
    assert (config.dataset, config.image_size, config.test_ways, config.test_queries) == ("image_folder", 84, 5, 15)
    assert config.test_shots == int(preset[-2]) and config.published.startswith(f"5-way {preset[-2]}-shot")
    if name == "miniimagenet_maml":
        assert (config.model.hidden, config.inner_steps, config.inner_lr, config.eval_inner_steps) == (32, 5, 0.01, 10)
        assert config.meta_batch_size == {"1": 4, "5": 2}[preset[-2]]
    else:
        assert config.model.name == ("resnet12" if preset.startswith("resnet12") else "conv4")
    config.method = "fomaml" if name == "miniimagenet_maml" else config.method  # first order: one flag
    validate(config)


@pytest.mark.parametrize("key, value, message", [
    ("augment.crop_min_scale", 0.0, r"augment\.crop_min_scale=0\.0: must lie in \(0, 1\]"),
    ("augment.crop_min_scale", 1.5, r"augment\.crop_min_scale=1\.5"),
    ("augment.color_jitter", -0.1, r"augment\.color_jitter=-0\.1: must be >= 0"),
])
def test_photo_augment_keys_are_validated(key, value, message, photo_root):
    config = tiny_config(photo_root, "protonet", **{key: value})
    with pytest.raises(ValueError, match=message):
        validate(config)


def test_photo_augment_keys_name_what_they_cannot_do(photo_root):
    config = tiny_config(photo_root, "protonet", **{"augment.color_jitter": 0.4})
    config.dataset = "omniglot"
    with pytest.raises(ValueError, match=r"augment\.color_jitter=0\.4: is for RGB photos"):
        validate(config)
    config = tiny_config(photo_root, "maml", **{"augment.flip": True})
    config.dataset, config.model.name = "sinusoid", "mlp"
    with pytest.raises(ValueError, match=r"augment\.flip=True: is for images"):
        validate(config)


def test_affine_alone_keeps_its_random_draws(photo_root):
    """Runs with only augment.affine (before the photo keys existed) draw the same distortions as before."""
    import jax

    from fewjax.data import augment
    from fewjax.experiment.data import _augment

    config = tiny_config(photo_root, "protonet", **{"augment.affine": True})
    x = jax.numpy.asarray(np.random.default_rng(0).random((2, 2, 8, 8, 3)), jax.numpy.float32)
    a = config.augment
    alone = augment.random_affine(max_rotation=a.max_rotation, max_shear=a.max_shear, max_scale=a.max_scale,
                                  max_shift=a.max_shift)
    np.testing.assert_array_equal(np.asarray(_augment(config)(jax.random.key(5), x)),
                                  np.asarray(alone(jax.random.key(5), x)))
    assert _augment(tiny_config(photo_root, "protonet")) is None
