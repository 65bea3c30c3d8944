import importlib.util
from pathlib import Path

import pytest

from fewjax.experiment.config import base_config, validate

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.py"))


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_documents_itself_and_validates(path):
    text = path.read_text()
    for heading in ("Run:", "Run time:", "Expected:", "Presets:"):
        assert heading in text.split('"""')[1], f"{path.name} docstring lacks {heading}"
    module = load(path)
    config = module.get_config()
    validate(config)
    for key in ("total_steps", "eval_every", "checkpoint_every", "seed", "data_dir"):
        assert key in config
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        module.get_config("nope")


def test_locked_config_rejects_new_keys_and_wrong_types():
    config = base_config()
    config.lock()
    with pytest.raises(AttributeError):
        config.totl_steps = 3
    with pytest.raises(TypeError):
        config.total_steps = "many"


@pytest.mark.parametrize("key, value", [("task_loop", "loop"), ("model.conv_grad", "fast"),
                                        ("augment.max_scale", 1.5), ("early_stop_patience", -1),
                                        ("distance", "l2"), ("matching_distance", "euclidean"),
                                        ("inner_batch_size", 4), ("eval_inner_batch_size", 4), ("inner_state", "kept"),
                                        ("inner_state", "carried")])
def test_bad_choice_is_named_before_anything_runs(key, value):
    config = base_config()
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate(config)


@pytest.mark.parametrize("changes, key, fix", [
    ({"image_size": 12}, "image_size", r"below 16 pixels no feature is left: use >= 16 \(or model.pool=stride\)"),
    ({"model.name": "resnet12", "model.pool": "stride"}, "model.pool", "resnet12 pools with max-pooling only"),
    ({"model.pool": "avg"}, "model.pool", r"choose one of \('max', 'stride'\)"),
    ({"model.norm": "group"}, "model.norm", "choose one of"),
    ({"model.name": "mlp"}, "model.name", "the mlp is for sinusoid regression"),
    ({"dataset": "image_folder", "split": "lake"}, "split", "names Omniglot's alphabets"),
    ({"dataset": "sinusoid", "method": "maml", "model.name": "conv4"}, "model.name", "runs on the mlp"),
    ({"dataset": "sinusoid", "method": "maml", "model.name": "mlp", "test_ways": 20}, "test_ways", "no classes"),
    ({"dataset": "sinusoid", "method": "maml", "model.name": "mlp", "model.dtype": "bfloat16"}, "model.dtype",
     "float32"),
    ({"method": "metasgd", "inner_optimizer": "adam"}, "inner_optimizer", "metasgd does not read it"),
    ({"method": "protonet", "inner_optimizer": "adam"}, "inner_optimizer", "protonet does not read it"),
    ({"dataset": "clinc150", "method": "anil", "inner_optimizer": "adam"}, "inner_optimizer", "anil does not"),
    ({"dataset": "clinc150", "method": "protonet", "text.l2sp": 1.0}, "text.l2sp",
     r"only \('finetune',\) read it and protonet would ignore it: leave the default 0.0"),
    ({"dataset": "clinc150", "method": "setfit", "text.logit_scale": 30.0}, "text.logit_scale", "setfit would ignore"),
    ({"dataset": "clinc150", "method": "protonet", "augment.affine": True}, "augment.affine", "is for images"),
    ({"within_alphabet": True}, "within_alphabet", "split='vinyals' tests on rotated characters"),
    ({"dataset": "clinc150", "method": "protonet", "text.max_length": 1000}, "text.max_length", r"in \[2, 512\]"),
])
def test_a_key_the_run_would_ignore_or_cannot_honour_is_named(changes, key, fix):
    config = base_config()
    config.update_from_flattened_dict(changes)
    with pytest.raises(ValueError, match=rf"config\.{key.replace('.', '[.]')}=.*{fix}"):
        validate(config)


@pytest.mark.parametrize("changes", [{"image_size": 12, "model.pool": "stride"},
                                     {"dataset": "clinc150", "method": "finetune", "total_steps": 0,
                                      "text.l2sp": 1.0, "inner_optimizer": "adam"},
                                     {"method": "reptile", "inner_optimizer": "adam"}])
def test_keys_the_run_reads_stay_accepted(changes):
    config = base_config()
    config.update_from_flattened_dict(changes)
    validate(config)


@pytest.mark.parametrize("method, loop, backend, want", [
    ("maml", "auto", "cpu", 1), ("reptile", "auto", "cpu", 1), ("protonet", "auto", "cpu", None),
    ("maml", "auto", "gpu", None), ("maml", "vmap", "cpu", None), ("protonet", "scan", "gpu", 1),
])
def test_platform_choices_are_resolved_once_for_the_backend(method, loop, backend, want):
    from fewjax.methods import resolve_platform, task_chunk_size

    config = base_config()
    config.method, config.task_loop = method, loop
    resolved = resolve_platform(config, backend)
    assert task_chunk_size(resolved) == want
    assert resolved.model.conv_grad == ("matmul" if backend == "cpu" else "xla")
    assert config.task_loop == loop and config.model.conv_grad == "auto"  # the caller's config is left as it was
    if loop == "auto":
        with pytest.raises(ValueError, match="resolve 'auto'"):
            task_chunk_size(config)


def test_within_alphabet_needs_omniglot():
    config = base_config()
    config.dataset, config.within_alphabet = "image_folder", True
    with pytest.raises(ValueError, match="within_alphabet"):
        validate(config)


@pytest.mark.parametrize("dataset,share,match", [("omniglot", 1.5, r"in \[0, 1\]"),
                                                 ("image_folder", 0.5, "need Omniglot's alphabets")])
def test_train_within_alphabet_is_a_share_for_omniglot(dataset, share, match):
    config = base_config()
    config.dataset, config.train_within_alphabet = dataset, share
    with pytest.raises(ValueError, match=f"config.train_within_alphabet={share}: .*{match}"):
        validate(config)


def test_train_within_alphabet_groups_the_training_episodes_by_alphabet(monkeypatch):
    import numpy as np

    import fewjax.experiment.data as data
    from fewjax.data import ArraySource

    names = [f"{a}/character{i:02d}/rot000" for a in "AB" for i in range(4)]
    source = ArraySource(np.zeros((16, 4, 4, 1), np.uint8), np.repeat(np.arange(8), 2), names)
    monkeypatch.setattr(data, "make_source", lambda config, split, **kwargs: source)
    config = base_config()
    config.ways = config.test_ways = 3
    config.queries = config.test_queries = 1
    config.train_within_alphabet = 0.25
    train = data.make_sampler(config, "train", seed=0)
    assert train.within_group == 0.25 and train.class_groups == ["A"] * 4 + ["B"] * 4
    assert data.make_sampler(config, "val", seed=0).within_group == 0.0
    config.ways = 5
    with pytest.raises(ValueError, match=r"config.train_within_alphabet=0.25 .* config.ways=5 exceeds the largest "
                                         r"one \(4 classes\)"):
        data.make_sampler(config, "train", seed=0)
    config.within_alphabet, config.test_ways = True, 5
    with pytest.raises(ValueError, match=r"config.within_alphabet=True .* config.test_ways=5 exceeds the largest one "
                                         r"\(4 classes\): lower config.test_ways"):
        data.make_sampler(config, "test", seed=0)


def test_affine_augmentation_reaches_the_training_sampler_only(image_root):
    from fewjax.experiment.data import make_sampler
    from tests.conftest import tiny_config

    config = tiny_config(image_root, "protonet", **{"augment.affine": True})
    assert make_sampler(config, "train", seed=0).augment is not None
    assert make_sampler(config, "test", seed=0).augment is None


@pytest.mark.parametrize("name", ["omniglot_protonet", "omniglot_maml", "omniglot_fomaml", "omniglot_matching",
                                  "omniglot_reptile"])
def test_every_omniglot_config_has_lakes_protocol(name):
    config = load(CONFIGS[0].with_name(f"{name}.py")).get_config("lake")
    validate(config)
    assert config.split == "lake" and config.within_alphabet
    assert (config.test_ways, config.test_shots, config.test_queries) == (20, 1, 1)


@pytest.mark.parametrize("preset", ["5w1s", "5w5s", "20w1s", "20w5s"])
def test_reptile_presets_take_one_epoch_of_minibatches_per_task(preset):
    # Nichol et al.: 10 examples per class, inner steps x inner batch = one pass over them.
    config = load(CONFIGS[0].with_name("omniglot_reptile.py")).get_config(preset)
    validate(config)
    assert config.shots + config.queries == 10
    assert config.inner_steps * config.inner_batch_size == config.ways * 10
    config.inner_batch_size = config.ways * 10 + 1
    with pytest.raises(ValueError, match="inner_batch_size"):
        validate(config)
    # and test-time steps on mini-batches of the support set, as their --eval-batch
    assert config.eval_inner_batch_size == (5 if config.ways == 5 else 10)
    config.inner_batch_size = 10
    config.eval_inner_batch_size = config.test_ways * config.test_shots + 1
    with pytest.raises(ValueError, match=r"eval_inner_batch_size.*test_ways \* test_shots"):
        validate(config)
