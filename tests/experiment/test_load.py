"""fewjax.load: a trained workdir back as config, params, model and embed / predict / adapt functions."""
import jax
import numpy as np
import pytest

import fewjax
from fewjax.experiment.data import make_sampler
from fewjax.train import train_and_evaluate
from tests.conftest import tiny_config


@pytest.fixture(scope="module", params=["protonet", "maml"])
def trained(request, tmp_path_factory, image_root):  # noqa: F811
    config = tiny_config(image_root, request.param)
    workdir = tmp_path_factory.mktemp(request.param)
    train_and_evaluate(config, workdir, progress=False)
    return request.param, workdir


def test_predict_agrees_with_the_evaluation_of_the_same_episodes(trained):
    name, workdir = trained
    run = fewjax.load(workdir)
    assert run.config.method == name and run.checkpoint == "best" and run.step in (2, 4)
    assert run.config.model.conv_grad in ("matmul", "xla") and run.config.task_loop in ("scan", "vmap")
    tasks = make_sampler(run.config, "test", seed=1).sample_batch(0, 3)
    expected = jax.jit(run.method.evaluate)(run.params, tasks)["accuracy"]
    for i in range(3):
        task = jax.tree.map(lambda a: np.asarray(a[i]), tasks)
        predicted = run.predict((task.support.x, task.support.y), task.query.x)
        assert predicted.shape == task.query.y.shape
        np.testing.assert_allclose(np.mean(predicted == task.query.y), expected[i], atol=1e-6)


def test_embed_and_adapt_where_the_method_has_them(trained):
    name, workdir = trained
    run = fewjax.load(workdir, checkpoint="latest")
    task = jax.tree.map(lambda a: np.asarray(a[0]), make_sampler(run.config, "test", seed=1).sample_batch(0, 1))
    support = (task.support.x, task.support.y)
    if name == "protonet":
        assert run.embed(task.query.x).shape[0] == task.query.x.shape[0]
        with pytest.raises(ValueError, match="does not adapt"):
            run.adapt(support)
    else:
        adapted = run.adapt(support)
        assert jax.tree.structure(adapted) == jax.tree.structure(run.params)
        assert not np.allclose(adapted["head"]["kernel"], run.params["head"]["kernel"])
        with pytest.raises(ValueError, match="no embedding"):
            run.embed(task.query.x)
        with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
            run.predict((task.support.x, task.support.y + 5), task.query.x)


def test_missing_workdir_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints/ folder"):
        fewjax.load(tmp_path)
