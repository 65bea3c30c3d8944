"""Real-image backbones through the trainer: ResNet-12 and conv4 at 84x84 train and evaluate on a generated folder."""
import numpy as np
import pytest
from PIL import Image

from fewjax.train import train_and_evaluate
from fewjax.methods import build_model
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def rgb_root(tmp_path_factory):
    """24 classes x 4 RGB images of 84x84: class c is a coloured square at a class-specific place on noise."""
    root = tmp_path_factory.mktemp("rgb84")
    rng = np.random.default_rng(0)
    for c in range(24):
        (root / f"class{c:02d}").mkdir()
        r, col = divmod(c, 6)
        for i in range(4):
            img = rng.integers(0, 80, (84, 84, 3), dtype=np.uint8)
            img[12 * r + 4: 12 * r + 24, 12 * col + 4: 12 * col + 24] = (255, 40 * (c % 6), 30 * r)
            Image.fromarray(img, mode="RGB").save(root / f"class{c:02d}" / f"{i}.png")
    return root


@pytest.mark.parametrize("model, hidden", [("resnet12", 4), ("conv4", 4)])
def test_protonet_trains_and_evaluates_on_84x84_images(model, hidden, rgb_root, tmp_path):
    config = tiny_config(rgb_root, "protonet", image_size=84, total_steps=2, eval_every=2, checkpoint_every=2,
                         log_every=2, **{"model.name": model, "model.hidden": hidden})
    record = train_and_evaluate(config, tmp_path, progress=False)
    assert record["method"] == "protonet" and 0.0 <= record["accuracy"] <= 1.0 and record["step"] == 2


def test_resnet12_from_config_has_the_published_widths_at_hidden_64():
    config = tiny_config("unused", "protonet", **{"model.name": "resnet12", "model.hidden": 64})
    assert tuple(build_model(config, classes=None).widths) == (64, 160, 320, 640)
