"""The TFDS adapter against tfds' own offline mock data (skipped without tensorflow-datasets)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fewjax.data import episodes, tfds_source


def test_mock_mnist_as_source():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=60):
        src = tfds_source("mnist", "train")
        small = tfds_source("mnist", "train", image_size=14, max_examples=20)
    assert src.example_shape == (28, 28, 1) and src.dtype == np.uint8
    assert int(src.counts.sum()) == 60 and np.all(src.counts > 0)
    assert set(src.class_names) <= {str(d) for d in range(10)}
    assert small.example_shape == (14, 14, 1) and int(small.counts.sum()) == 20
    task = episodes(src, ways=3, shots=1, queries=1, seed=0).sample(0)
    assert task.support.x.shape == (3, 28, 28, 1)


def test_bad_feature_name():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        with pytest.raises(ValueError, match="no feature 'img'"):
            tfds_source("mnist", "train", image_key="img")


def test_importing_fewjax_data_does_not_import_tensorflow():
    code = "import sys, fewjax.data; assert 'tensorflow' not in sys.modules; assert 'tensorflow_datasets' not in sys.modules"
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
