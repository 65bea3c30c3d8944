"""BERT encoder: reproduces the PyTorch reference, loads/maps weights, embeds and classifies."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from fewjax.models import bert, pretrained
from fewjax.types import Batch
from tests.shared import SHARED

MODEL = SHARED / "models" / "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def minilm():
    if not (MODEL / "model.safetensors").is_file():
        pytest.skip(f"{MODEL} not available")
    module, params, tok = pretrained.load_pretrained(MODEL, add_pooler=True)
    return module, params, tok, dict(np.load(MODEL / "reference_outputs.npz"))


@pytest.fixture(scope="module")
def state():
    return load_file(str(MODEL / "model.safetensors"))


def test_reproduces_pytorch_reference(minilm):
    module, params, tok, ref = minilm
    ids = tok(list(ref["sentences"]), max_length=ref["input_ids"].shape[1])
    np.testing.assert_array_equal(ids, ref["input_ids"])
    mask = ref["attention_mask"]
    hidden, pooled = jax.jit(lambda p, i, m: module.apply({"params": p}, i, attention_mask=m))(params, ids, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(hidden)[real], ref["last_hidden_state"][real], atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(pooled), ref["pooler_output"], atol=1e-5, rtol=0)
    emb = bert.pool(hidden, mask, kind="mean", normalize=True)
    np.testing.assert_allclose(np.asarray(emb), ref["sentence_embedding"], atol=1e-5, rtol=0)


def test_embed_fn_matches_reference_at_any_bucket_length(minilm):
    module, params, tok, ref = minilm
    enc = bert.BertEncoder(module.config)  # without pooler: same params, extra pooler weights unused
    embed_fn = jax.jit(bert.make_embed_fn(enc, pooling="mean", normalize=True, pad_id=tok.pad_id))
    ids = tok(list(ref["sentences"]), max_length=128)  # more padding than the reference's 70
    np.testing.assert_allclose(np.asarray(embed_fn(params, ids)), ref["sentence_embedding"], atol=1e-5, rtol=0)
    # leading axes are kept: [ways, n, L] -> [ways, n, H]
    assert embed_fn(params, ids.reshape(2, 4, 128)).shape == (2, 4, 384)


def test_bfloat16_compute_keeps_float32_params(minilm):
    module, params, tok, ref = minilm
    enc = bert.BertEncoder(module.config, dtype=jnp.bfloat16)
    short = [0, 1, 2, 5]  # the sentences of at most 17 tokens: one 32-token bucket
    ids = tok(list(ref["sentences"][short]))
    emb = jax.jit(bert.make_embed_fn(enc))(params, ids)
    assert emb.dtype == jnp.float32 and ids.shape == (4, 32)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    cos = np.sum(np.asarray(emb) * ref["sentence_embedding"][short], axis=-1)
    assert cos.min() > 0.995, cos


def test_pool_cls_and_mean():
    h = jnp.array([[[3.0, 4.0], [1.0, 0.0], [100.0, 100.0]]])
    m = jnp.array([[1, 1, 0]])
    np.testing.assert_allclose(bert.pool(h, m, kind="cls", normalize=True), [[0.6, 0.8]], atol=1e-6)
    np.testing.assert_allclose(bert.pool(h, m, kind="mean", normalize=False), [[2.0, 2.0]], atol=1e-6)
    with pytest.raises(ValueError, match="max"):
        bert.pool(h, m, kind="max")


def test_convert_state_dict_reports_and_maps(minilm, state):
    module, params, _, _ = minilm
    cfg = module.config
    # MiniLM stores (out, in): kernels are transposed, LayerNorm weight -> scale.
    np.testing.assert_array_equal(
        params["layer_0"]["attention"]["query"]["kernel"], state["encoder.layer.0.attention.self.query.weight"].T
    )
    np.testing.assert_array_equal(params["embeddings"]["LayerNorm"]["scale"], state["embeddings.LayerNorm.weight"])
    # Classification-model layout: "bert." prefix, old gamma/beta names, a task head, a stray tensor, a gap.
    renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma"): v for k, v in state.items()}
    renamed["classifier.weight"] = np.zeros((2, 384), np.float32)
    renamed["foo.bar"] = np.zeros(3, np.float32)
    del renamed["bert.encoder.layer.3.output.dense.bias"]
    p2, report = pretrained.convert_state_dict(renamed, cfg, add_pooler=False)
    assert report.missing == ("layer_3/output/bias",)
    assert report.unexpected == ("foo.bar",)
    assert set(report.ignored) == {
        "classifier.weight", "bert.embeddings.position_ids", "bert.pooler.dense.weight", "bert.pooler.dense.bias"
    }
    np.testing.assert_array_equal(p2["layer_5"]["output_LayerNorm"]["scale"], params["layer_5"]["output_LayerNorm"]["scale"])
    bad = dict(state)
    bad["encoder.layer.0.intermediate.dense.weight"] = bad["encoder.layer.0.intermediate.dense.weight"].T
    with pytest.raises(ValueError, match="intermediate.dense.weight"):
        pretrained.convert_state_dict(bad, cfg)


def _tiny_folder(tmp_path, state, *, drop=(), extra=None):
    """A 1-layer, 1000-word checkpoint cut from MiniLM, with the real tokenizer cut to the same 1000 words."""
    cfg = json.loads((MODEL / "config.json").read_text())
    cfg.update(num_hidden_layers=1, vocab_size=1000)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    tokenizer = json.loads((MODEL / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"] = {w: i for w, i in tokenizer["model"]["vocab"].items() if i < 1000}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer))
    tiny = {k: v for k, v in state.items() if not k.startswith("encoder.layer.") or k.startswith("encoder.layer.0.")}
    tiny["embeddings.word_embeddings.weight"] = tiny["embeddings.word_embeddings.weight"][:1000]
    for k in drop:
        del tiny[k]
    tiny.update(extra or {})
    save_file({k: np.ascontiguousarray(v) for k, v in tiny.items()}, str(tmp_path / "model.safetensors"))
    return tmp_path


def test_load_pretrained_errors_name_the_problem(tmp_path, state):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pretrained.load_pretrained(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    folder = _tiny_folder(tmp_path / "a", state)
    module, params, tok = pretrained.load_pretrained(folder)
    assert module.config.num_hidden_layers == 1 and "layer_1" not in params
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        pretrained.load_pretrained(folder)
    (tmp_path / "b").mkdir()
    _tiny_folder(tmp_path / "b", state, drop=["encoder.layer.0.output.dense.bias"])
    with pytest.raises(ValueError, match="layer_0/output/bias"):
        pretrained.load_pretrained(tmp_path / "b")
    (tmp_path / "c").mkdir()
    _tiny_folder(tmp_path / "c", state, extra={"encoder.layer.1.output.dense.bias": np.zeros(384, np.float32)})
    with pytest.raises(ValueError, match="strict=False"):
        pretrained.load_pretrained(tmp_path / "c")
    pretrained.load_pretrained(tmp_path / "c", strict=False)
    (tmp_path / "c" / "tokenizer.json").unlink()  # the full 30,522-word tokenizer beside a 1000-word table
    (tmp_path / "c" / "tokenizer.json").symlink_to(MODEL / "tokenizer.json")
    with pytest.raises(ValueError, match="has 30522 tokens but config.json's vocab_size is 1000: ids past it"):
        pretrained.load_pretrained(tmp_path / "c", strict=False)


def test_hub_name_offline_gives_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="Offline.*huggingface-cli download"):
        pretrained.load_pretrained("sentence-transformers/all-MiniLM-L6-v2")


def test_config_rejects_unsupported_architectures():
    with pytest.raises(ValueError, match="model_type='roberta'"):
        bert.BertConfig.from_dict({"model_type": "roberta"})
    with pytest.raises(ValueError, match="divisible"):
        bert.BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        cfg = bert.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=16, max_position_embeddings=4)
        bert.BertEncoder(cfg).init(jax.random.key(0), jnp.zeros((1, 5), jnp.int32))


def test_classifier_loss_fn_jits_and_differentiates(minilm):
    module, params, tok, ref = minilm
    # the first layer of MiniLM only (the other layers' params are passed but unused): fast to differentiate
    enc = bert.BertEncoder(dataclasses.replace(module.config, num_hidden_layers=1), remat=True)
    ids = tok(list(ref["sentences"][:4]), max_length=16)
    labels = jnp.array([0, 1, 0, 1])
    p = bert.init_classifier_params(jax.random.key(0), params, hidden_size=384, num_classes=2)
    loss_fn = bert.make_classifier_loss_fn(enc, normalize=True, logit_scale=10.0)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, metrics), grads = value_and_grad(p, Batch(ids, labels))
    np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-6)  # zero head: uniform predictions
    assert set(metrics) == {"loss", "accuracy"}
    assert np.abs(grads["head"]["kernel"]).max() > 0
    # the zero head blocks gradient to the encoder at the first step; a nonzero head lets it through
    p["head"]["kernel"] = 0.1 * jax.random.normal(jax.random.key(1), (384, 2))
    _, grads = value_and_grad(p, Batch(ids, labels))  # same shapes: no second compilation
    g = grads["encoder"]["layer_0"]["attention"]["query"]["kernel"]
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    # a few SGD steps on the head alone (ANIL-style) fit the 4 examples
    head = p["head"]
    step = jax.jit(jax.grad(lambda h, e: loss_fn({"encoder": e, "head": h}, Batch(ids, labels))[0]))
    for _ in range(30):
        head = jax.tree.map(lambda w, g: w - 1.0 * g, head, step(head, params))
    assert loss_fn({"encoder": params, "head": head}, Batch(ids, labels))[1]["accuracy"] == 1.0


def test_soft_prompt_is_exactly_tokens_whose_embeddings_it_holds():
    cfg = bert.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=32)
    enc = bert.BertEncoder(cfg)
    ids = jnp.array([[1, 7, 9, 0], [1, 4, 0, 0]])
    mask = (ids != 0).astype(jnp.int32)
    params = enc.init(jax.random.key(0), ids)["params"]
    plain = enc.apply({"params": params}, ids, attention_mask=mask)
    empty = enc.apply({"params": params}, ids, attention_mask=mask, prompt=jnp.zeros((0, 16)))
    np.testing.assert_array_equal(np.asarray(empty), np.asarray(plain))
    # a prompt holding the word embeddings of tokens 11 and 12 is those tokens inserted after the first one
    prompt = params["embeddings"]["word_embeddings"]["embedding"][jnp.array([11, 12])]
    prompted = enc.apply({"params": params}, ids, attention_mask=mask, prompt=prompt)
    inserted_ids = jnp.concatenate([ids[:, :1], jnp.array([[11, 12], [11, 12]]), ids[:, 1:]], axis=1)
    inserted = enc.apply({"params": params}, inserted_ids,
                         attention_mask=jnp.concatenate([mask[:, :1], jnp.ones((2, 2), jnp.int32), mask[:, 1:]], 1))
    assert prompted.shape == plain.shape
    keep = np.array([0, 3, 4, 5])  # the input tokens' positions in the longer sequence
    np.testing.assert_allclose(np.asarray(prompted), np.asarray(inserted)[:, keep], atol=1e-6, rtol=0)
    embed = bert.make_embed_fn(enc, pad_id=0)
    grad = jax.grad(lambda p: embed(params, ids, p)[:, 0].sum())(prompt)
    assert grad.shape == prompt.shape and np.abs(np.asarray(grad)).sum() > 0
    with pytest.raises(ValueError, match=r"prompt must be \[prompt_length, 16\]"):
        enc.apply({"params": params}, ids, prompt=jnp.zeros((2, 8)))
