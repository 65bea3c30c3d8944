import numpy as np
import pytest
from PIL import Image

from fewjax.experiment.config import base_config


@pytest.fixture(scope="session")
def image_root(tmp_path_factory):
    """24 classes x 6 images of 28x28 grayscale PNG: class c draws a bright square at a class-specific place."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for c in range(24):
        (root / f"class{c:02d}").mkdir()
        r, col = divmod(c, 6)
        for i in range(6):
            img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            img[4 * r + 2: 4 * r + 9, 4 * col + 2: 4 * col + 9] = 255
            Image.fromarray(img, mode="L").save(root / f"class{c:02d}" / f"{i}.png")
    return root


def tiny_config(image_root, method="protonet", **overrides):
    c = base_config()
    c.method, c.dataset, c.data_dir = method, "image_folder", str(image_root)
    c.model.hidden = 8
    c.ways = c.test_ways = 3
    c.shots = c.test_shots = 1
    c.queries = c.test_queries = 2
    c.meta_batch_size = 2
    c.inner_steps, c.eval_inner_steps, c.inner_lr = 1, 2, 0.4
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 4, 2, 2, 2
    c.val_episodes, c.test_episodes, c.eval_batch_size = 4, 6, 3
    c.keep_checkpoints = 2
    c.update_from_flattened_dict(overrides)  # keys like "model.hidden"
    return c


def sinusoid_config(**overrides):
    c = base_config()
    c.method, c.dataset = "maml", "sinusoid"
    c.model.name = "mlp"
    c.ways = c.test_ways = 1
    c.shots = c.queries = c.test_shots = c.test_queries = 5
    c.meta_batch_size = 4
    c.inner_lr, c.eval_inner_steps = 0.01, 1
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 6, 2, 3, 3
    c.val_episodes, c.test_episodes, c.eval_batch_size = 8, 8, 4
    c.update_from_flattened_dict(overrides)
    return c
