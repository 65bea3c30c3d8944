"""Text few-shot methods through the trainer: train 2 steps + evaluate, zero-step baseline, evaluate.py on a CSV.

The encoder is all-MiniLM-L6-v2 from the shared folder, cut to its first layer (`text.num_layers=1`) to keep
compile times short; nothing downloads.
"""
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewjax
from fewjax.eval.workdir import evaluate_workdir
from fewjax.models import head_mask
from fewjax.models.bert import make_classifier_loss_fn
from fewjax.train import train_and_evaluate
from fewjax.experiment.checkpoint import Checkpoints
from fewjax.experiment.config import FlagError
from fewjax.eval.evaluate import TEST_SEED, evaluate
from fewjax.experiment.data import episodes_to_score, make_sampler
from fewjax.experiment.config import validate
from fewjax.methods import TEXT_METHODS, build_method
from fewjax.methods.metric import episode_scores
from fewjax.text.datasets import make_text_source
from fewjax.text.encoder import pretrained
from tests.shared import TEXT_READY, text_config

pytestmark = pytest.mark.skipif(not TEXT_READY, reason="shared MiniLM model / text data not found")


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if m == "fomaml" else m
                                    for m in TEXT_METHODS])
def test_every_text_method_trains_and_evaluates(method, tmp_path):
    config = text_config(method, total_steps=0 if method == "finetune" else 2)
    if method == "distill":  # a 2-layer teacher, a 1-layer student
        config.text.num_layers, config.text.student_layers = 2, 1
    record = train_and_evaluate(config, tmp_path, progress=False)
    assert record["method"] == method and record["dataset"] == "clinc150" and record["episodes"] == 4
    assert 0.0 <= record["accuracy"] <= 1.0 and np.isfinite(record["ci95"])
    # A 1-layer MiniLM already separates 3 CLINC150 intents far above chance (1/3).
    assert record["accuracy"] > 0.5
    with Checkpoints(tmp_path / "checkpoints", read_only=True) as ckpts:
        assert ckpts.latest_step() == config.total_steps
    if method != "finetune":
        rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert any(np.isfinite(r.get("train/loss", np.nan)) for r in rows)


def test_zero_step_protonet_keeps_the_pretrained_encoder_and_evaluates_a_csv(tmp_path):
    config = text_config("protonet", total_steps=0)
    train_and_evaluate(config, tmp_path / "run", progress=False)
    _, params, _ = pretrained(config)
    method = build_method(config)
    x = make_sampler(config, "train", seed=0).sample(0).support.x
    with Checkpoints(tmp_path / "run" / "checkpoints", read_only=True) as ckpts:
        from fewjax.experiment.state import outer_optimizer
        from fewjax.experiment.state import init_state

        state, info = ckpts.restore(init_state(method.init(jax.random.key(0), x), outer_optimizer(config),
                                               ema=False), step="latest")
    assert info["step"] == 0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    topics = {"weather": ["will it rain tomorrow", "how hot is it outside today", "is it going to snow tonight",
                          "what's the forecast for the weekend"],
              "music": ["play some jazz music", "put on my favourite song", "skip to the next track",
                        "turn up the music volume"],
              "food": ["order a large pizza", "find a good sushi restaurant", "how do I bake bread",
                       "what should I cook for dinner"]}
    csv = tmp_path / "mine.csv"
    csv.write_text("text,label\n" + "".join(f"\"{t}\",{k}\n" for k, ts in topics.items() for t in ts))
    flags = types.SimpleNamespace(workdir=str(tmp_path / "run"), checkpoint="best", split="test", episodes=6,
                                  batch_size=3, ways=3, shots=1, queries=3, inner_steps=None, data=str(csv),
                                  data_dir=None, ema=False, text_column=None, label_column=None)
    record = evaluate_workdir(flags)
    assert record["data"] == str(csv) and record["episodes"] == 6 and record["ways"] == 3
    assert record["accuracy"] > 0.6
    assert json.loads((tmp_path / "run" / "eval_test.json").read_text()) == record
    assert record["max_length"] == 0  # the file's texts at their own length, not cut at the run's 32 tokens
    for change, match in [({"queries": 4}, r"3 classes of --data=.* have fewer examples than --shots \+ --queries "
                                           r"= 1 \+ 4 \(the smallest, 'food', has 4\): lower --queries or --shots "
                                           r"to at most 4 in total, or remove those classes from the file"),
                          ({"text_column": "utterance"}, r"--data: .*mine.csv has no column 'utterance'; its "
                                                          r"columns are \['label', 'text'\]")]:
        with pytest.raises(FlagError, match=match):
            evaluate_workdir(types.SimpleNamespace(**{**vars(flags), **change}), save=False)

    flags.data, flags.dataset, flags.max_length, flags.ways = None, "fewrel", None, 5  # trained on CLINC150, 32
    record = evaluate_workdir(flags, save=False)
    assert record["dataset"] == record["data"] == "fewrel" and record["ways"] == 5
    assert record["max_length"] == 64  # FewRel's preset length, not the run's 32 that would cut its sentences
    assert record["accuracy"] > 0.3  # chance 0.2; 90 queries; a 1-layer encoder that never saw FewRel
    flags.dataset = "omniglot"
    with pytest.raises(FlagError, match="--dataset='omniglot': this is a text checkpoint"):
        evaluate_workdir(flags, save=False)

    run = fewjax.load(tmp_path / "run")  # research code: strings in, classes out
    names = sorted(topics)
    support = ([topics[k][0] for k in names], [0, 1, 2])
    queries = [t for k in names for t in topics[k][1:]]
    predicted = run.predict(support, queries)
    assert run.step == 0 and predicted.shape == (9,)
    assert np.mean(predicted == np.repeat([0, 1, 2], 3)) > 0.6
    assert run.embed(queries[:2]).shape == (2, run.model.config.hidden_size)


REQUESTS = {
    "weather": ["will it rain", "how hot will it be outside this afternoon", "snow tonight?",
                "what is the forecast for the long weekend in the mountains", "is it windy"],
    "music": ["play jazz", "put on my favourite song from the summer playlist", "skip this track",
              "turn the music up a little", "shuffle"],
    "food": ["order a large pepperoni pizza with extra cheese for delivery", "sushi nearby", "bake bread",
             "what should I cook for dinner tonight", "recipe for pancakes"],
    "travel": ["book a flight to paris", "how long is the train to berlin and does it have wifi", "rent a car",
               "find me a hotel near the airport", "is my flight delayed"],
    "banking": ["what is my balance", "transfer fifty dollars to my savings account before friday",
                "freeze my card", "show my last five transactions", "pay the electricity bill"],
    "alarm": ["wake me at six", "set an alarm for seven thirty tomorrow morning please", "cancel my alarms",
              "snooze", "change my weekday alarm to eight"],
}


@pytest.mark.parametrize("overrides", [{}, {"text.label_names": True}, {"text.support_filter": 0.5},
                                       {"test_ways": 5, "test_shots": 2}])
def test_text_protonet_scores_features_embedded_once_as_it_scores_the_texts(overrides, tmp_path):
    config = text_config("protonet", **overrides)
    method = build_method(config)
    params = method.init(jax.random.key(0), None)
    csv = tmp_path / "requests.csv"  # 6 intents of 5 requests each, of different lengths
    csv.write_text("text,label\n" + "".join(f"\"{t}\",{label}\n" for label, texts in REQUESTS.items() for t in texts))
    eval_fn, sampler, seconds = episodes_to_score(method, params, config, "test", seed=TEST_SEED, data_path=str(csv))
    assert eval_fn is method.score and sampler.source.dtype == np.float32 and seconds > 0  # features, not token ids
    on_texts = make_sampler(config, "test", seed=TEST_SEED, data_path=str(csv))
    cached = eval_fn(params, next(sampler.eval_batches(12, seed=TEST_SEED, batch_size=12)))
    texts = method.evaluate(params, next(on_texts.eval_batches(12, seed=TEST_SEED, batch_size=12)))
    assert 0.3 < texts["accuracy"].mean() < 1.0  # a 1-layer encoder: right and wrong answers to tell apart
    assert cached.keys() == texts.keys()
    for key in texts:  # episode by episode: the same episodes, the same loss and accuracy
        np.testing.assert_allclose(cached[key], texts[key], rtol=1e-5, atol=1e-5)
    summary = evaluate(eval_fn, params, sampler, num_episodes=12, batch_size=5)
    assert summary["accuracy"] == pytest.approx(float(np.mean(texts["accuracy"])), abs=1e-6)


def test_support_filter_takes_a_repeated_support_sentence_out_of_its_class_mean():
    tok = pretrained(text_config())[2]
    sentences = ["what is my bank balance", "what is my bank balance", "how much money do I have",
                 "play some jazz music", "book a table for two tonight"]
    full = fewjax.Batch(tok(sentences, max_length=32), np.array([0, 0, 0, 1, 2]))
    keep = np.array([True, False, True, True, True])
    kept = fewjax.Batch(full.x[keep], full.y[keep])
    queries = tok(["show my account balance", "how much is in my account", "put on a song"], max_length=32)
    config = text_config(**{"text.support_filter": 0.99})
    validate(config)
    method = build_method(config)
    params = method.init(jax.random.key(0), queries)
    kw = dict(method="protonet", distance="cosine", temperature=0.1)
    filtered = episode_scores(method.embed, params, full, queries, near_duplicate_threshold=0.99, **kw)[:, :3]
    np.testing.assert_allclose(filtered, episode_scores(method.embed, params, kept, queries, **kw)[:, :3], rtol=1e-5)
    assert not np.allclose(filtered, episode_scores(method.embed, params, full, queries, **kw)[:, :3])
    np.testing.assert_array_equal(method.predict(params, full, queries), np.argmax(filtered, -1))


@pytest.mark.slow
def test_anil_on_features_equals_maml_with_head_mask():
    """ANIL adapts the head on precomputed features: same loss and meta-gradient as the head-masked maml_loss."""
    config = text_config("anil", inner_steps=2)
    method = build_method(config)
    tasks = make_sampler(config, "train", seed=0).sample_batch(0, 1)
    params = method.init(jax.random.key(0), tasks.support.x[0])
    params["head"] = jax.tree.map(lambda a: a + 0.01 * jnp.arange(a.size).reshape(a.shape) / a.size, params["head"])
    grads, metrics = jax.jit(method.meta_grad)(params, tasks, 0)

    module, _, tok = pretrained(config)
    loss_fn = make_classifier_loss_fn(module, pad_id=tok.pad_id, logit_scale=config.text.logit_scale)
    reference = fewjax.over_tasks(lambda p, t: fewjax.maml_loss(loss_fn, p, t, inner_steps=2, inner_lr=config.inner_lr,
                                                                mask=head_mask(p)))
    (loss, _), ref_grads = jax.jit(jax.value_and_grad(reference, has_aux=True))(params, tasks)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-6)
    assert float(jnp.abs(grads["encoder"]["layer_0"]["output"]["kernel"]).max()) > 0  # the encoder learns


@pytest.mark.parametrize("head", ["logistic", "prototype"])
def test_setfit_episode_fine_tunes_on_support_pairs_then_fits_its_head(head):
    config = text_config("setfit", eval_inner_steps=3, inner_lr=1e-3, test_shots=2, **{"text.setfit_head": head})
    method = build_method(config)
    task = jax.tree.map(lambda a: a[0], make_sampler(config, "test", seed=0).sample_batch(0, 1))
    encoder = method.init(jax.random.key(0), task.support.x)
    adapted = jax.jit(method.adapt)(encoder, task.support)
    pair_loss = lambda enc: fewjax.setfit_loss(method.embed, enc, task.support)[0]
    assert float(pair_loss(adapted["encoder"])) < float(pair_loss(encoder))  # the contrastive stage trained
    features = method.embed(adapted["encoder"], task.support.x)
    if head == "logistic":
        expected = fewjax.logistic_head(features, task.support.y, classes=3, l2=config.text.head_l2)
    else:
        expected = {"kernel": jnp.stack([features[task.support.y == c].mean(0) for c in range(3)], axis=1),
                    "bias": jnp.zeros(3)}
    for a, b in zip(jax.tree.leaves(adapted["head"]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    scores = method.embed(adapted["encoder"], task.query.x) @ expected["kernel"] + expected["bias"]
    np.testing.assert_array_equal(method.predict(encoder, task.support, task.query.x), scores.argmax(-1))


def test_text_sources_and_clear_errors(tmp_path):
    config = text_config()
    splits = [set(make_text_source(config, s).class_names) for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [50, 50, 50] and not (splits[0] & splits[2])
    assert make_text_source(config, "test").example_shape == (32,)
    with pytest.raises(ValueError, match="total_steps=0"):
        validate(text_config("finetune", total_steps=5))
    with pytest.raises(ValueError, match="text datasets support"):
        validate(text_config("matching"))
    with pytest.raises(ValueError, match="text datasets support"):
        build_method(text_config("matching"))
    with pytest.raises(ValueError, match="student must be smaller than the 1-layer teacher"):
        build_method(text_config("distill"))
    with pytest.raises(ValueError, match="num_layers=9"):
        build_method(text_config(**{"text.num_layers": 9}))
    with pytest.raises(ValueError, match=r"text.support_filter=1.5.*\(0, 1\)"):
        validate(text_config(**{"text.support_filter": 1.5}))
    with pytest.raises(ValueError, match="support filtering is for text ProtoNet"):
        validate(text_config("anil", **{"text.support_filter": 0.9}))
    with pytest.raises(FileNotFoundError, match="text_file needs data_dir"):
        make_text_source(text_config(dataset="text_file", data_dir=str(tmp_path)), "train")


def test_text_file_dataset_is_split_by_class(tmp_path):
    rows = "".join(f"sentence {i} of topic {c},t{c}\n" for c in range(15) for i in range(3))
    (tmp_path / "d.csv").write_text("text,label\n" + rows)
    config = text_config(dataset="text_file", data_dir=str(tmp_path / "d.csv"))
    splits = [make_text_source(config, s).class_names for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [9, 3, 3]
    assert sorted(sum(map(list, splits), [])) == sorted(f"t{c}" for c in range(15))
    with pytest.raises(ValueError, match="fewer than ways=5"):
        make_text_source(text_config(dataset="text_file", data_dir=str(tmp_path / "d.csv"), ways=5, test_ways=5),
                         "train")
