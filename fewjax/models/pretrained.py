"""Loading Hugging Face BERT-family checkpoints into `fewjax.models.bert.BertEncoder`: safetensors weights mapped
onto the Flax parameter tree, and the fast tokenizer (`fewjax.models.tokenizer`). Neither torch nor transformers is
needed.

- `load_pretrained(name_or_path)` -> `(module, params, tokenizer)` from a local folder or a Hugging Face Hub name.
- `convert_state_dict(tensors, config)` -> `(params, ConversionReport)`: the weight mapping on its own.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fewjax.models.bert import BertConfig, BertEncoder
from fewjax.models.tokenizer import Tokenizer


_LAYER_MAP = {
    "attention.self.query": "attention/query",
    "attention.self.key": "attention/key",
    "attention.self.value": "attention/value",
    "attention.output.dense": "attention_output",
    "attention.output.LayerNorm": "attention_LayerNorm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_LayerNorm",
}
# Tensors of other heads or buffers in BERT checkpoints: not part of the encoder, skipped.
_IGNORED_PREFIXES = ("cls.", "classifier.", "qa_outputs.", "lm_head.")
_IGNORED_SUFFIXES = ("position_ids",)


class ConversionReport(NamedTuple):
    """What `convert_state_dict` did with the checkpoint's tensor names."""

    missing: tuple[str, ...]  # Flax parameters the checkpoint did not provide
    unexpected: tuple[str, ...]  # checkpoint tensors with no place in the encoder
    ignored: tuple[str, ...]  # known non-encoder tensors (buffers, task heads, unused pooler)


def _flax_path(name: str) -> tuple[tuple[str, ...], bool] | None:
    """PyTorch name (without `bert.`) -> (Flax param path, transpose?) or None."""
    parts = name.split(".")
    leaf = parts[-1]
    mod = ".".join(parts[:-1])
    if leaf in ("gamma", "beta"):  # pre-2019 LayerNorm names
        leaf = "weight" if leaf == "gamma" else "bias"
    if mod.startswith("embeddings."):
        sub = mod[len("embeddings.") :]
        if sub in ("word_embeddings", "position_embeddings", "token_type_embeddings") and leaf == "weight":
            return ("embeddings", sub, "embedding"), False
        if sub == "LayerNorm" and leaf in ("weight", "bias"):
            return ("embeddings", "LayerNorm", "scale" if leaf == "weight" else "bias"), False
        return None
    if mod == "pooler.dense" and leaf in ("weight", "bias"):
        return ("pooler", "kernel" if leaf == "weight" else "bias"), leaf == "weight"
    if mod.startswith("encoder.layer.") and leaf in ("weight", "bias"):
        rest = mod[len("encoder.layer.") :]
        idx, _, sub = rest.partition(".")
        if not idx.isdigit() or sub not in _LAYER_MAP:
            return None
        target = tuple(_LAYER_MAP[sub].split("/"))
        is_ln = sub.endswith("LayerNorm")
        if leaf == "weight":
            return (f"layer_{int(idx)}", *target, "scale" if is_ln else "kernel"), not is_ln
        return (f"layer_{int(idx)}", *target, "bias"), False
    return None


def convert_state_dict(
    state: Mapping[str, np.ndarray], config: BertConfig, *, add_pooler: bool = False
) -> tuple[dict, ConversionReport]:
    """PyTorch `BertModel` tensors -> Flax params of `BertEncoder(config, add_pooler=...)`.

    Dense weights `(out, in)` are transposed to kernels `(in, out)`; LayerNorm
    `weight` / `bias` become `scale` / `bias`; a `bert.` prefix (as in
    `BertForSequenceClassification` checkpoints) is stripped. Shapes are checked
    against the config (ValueError naming the tensor). Nothing raises for
    missing or unexpected names: they are returned in the report.
    """
    expected = jax.eval_shape(
        lambda: BertEncoder(config, add_pooler=add_pooler).init(
            jax.random.key(0), jnp.zeros((1, 1), jnp.int32)
        )["params"]
    )
    expected_flat = {
        tuple(getattr(k, "key", k) for k in path): leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]
    }
    flat: dict[tuple[str, ...], np.ndarray] = {}
    unexpected, ignored = [], []
    for name, value in state.items():
        short = name[len("bert.") :] if name.startswith("bert.") else name
        if short.startswith(_IGNORED_PREFIXES) or short.endswith(_IGNORED_SUFFIXES):
            ignored.append(name)
            continue
        mapped = _flax_path(short)
        if mapped is None:
            unexpected.append(name)
            continue
        path, transpose = mapped
        if path not in expected_flat:
            (ignored if path[0] == "pooler" else unexpected).append(name)
            continue
        arr = np.asarray(value, dtype=np.float32)
        arr = arr.T if transpose else arr
        if arr.shape != tuple(expected_flat[path]):
            raise ValueError(
                f"tensor {name!r} has shape {tuple(np.shape(value))}; the config expects "
                f"{tuple(expected_flat[path])} for {'/'.join(path)} (transposed: {transpose}). "
                "Does config.json belong to these weights?"
            )
        flat[path] = arr
    missing = tuple("/".join(p) for p in expected_flat if p not in flat)
    params: dict = {}
    for path, arr in flat.items():
        node = params
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = jnp.asarray(arr)
    return params, ConversionReport(missing, tuple(unexpected), tuple(ignored))


_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def _resolve_folder(name_or_path: str | os.PathLike, revision: str | None) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    looks_local = path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
    if looks_local or not name:
        raise FileNotFoundError(
            f"model folder {name!r} does not exist. Pass a folder holding {', '.join(_REQUIRED_FILES)} "
            "or a Hugging Face Hub name such as 'sentence-transformers/all-MiniLM-L6-v2'."
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{name!r} is not a local folder, and loading it from the Hub needs huggingface_hub: "
            "pip install 'fewjax[text]' (or huggingface-hub)."
        ) from e
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=list(_REQUIRED_FILES)))
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise FileNotFoundError(
            f"could not get {name!r} from the Hugging Face Hub ({type(e).__name__}: {e}). Offline? Download "
            f"{', '.join(_REQUIRED_FILES)} once (huggingface-cli download {name}) or pass a local folder."
        ) from e


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    dtype: Any = jnp.float32,
    add_pooler: bool = False,
    remat: bool = False,
    strict: bool = True,
    revision: str | None = None,
):
    """Load `(module, params, tokenizer)` from a folder or a Hugging Face Hub name.

    The folder must hold `config.json`, `model.safetensors` and `tokenizer.json`
    (a Hub name is fetched with `huggingface_hub.snapshot_download`, which
    reuses the local cache). `params` is the `"params"` collection (float32);
    `tokenizer` is a `fewjax.text.Tokenizer` with the checkpoint's stored
    padding/truncation reset. Missing encoder weights always raise; tensors
    that fit nowhere raise when `strict` (known task heads and buffers are
    skipped silently either way).

    Example:
        >>> module, params, tok = load_pretrained("../shared/models/all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> ids = tok(["hello world"])                                                  # doctest: +SKIP
        >>> make_embed_fn(module)(params, ids).shape                                     # doctest: +SKIP
        (1, 384)
    """
    folder = _resolve_folder(name_or_path, revision)
    for f in _REQUIRED_FILES:
        if not (folder / f).is_file():
            hint = (
                " Only PyTorch .bin weights are present: convert them to safetensors once "
                "(torch is not a fewjax dependency)." if f == "model.safetensors" and (folder / "pytorch_model.bin").exists() else ""
            )
            raise FileNotFoundError(f"{folder / f} is missing; a model folder needs {', '.join(_REQUIRED_FILES)}.{hint}")
    from safetensors.numpy import load_file

    config = BertConfig.from_json(folder / "config.json")
    params, report = convert_state_dict(load_file(str(folder / "model.safetensors")), config, add_pooler=add_pooler)
    if report.missing:
        raise ValueError(
            f"{folder / 'model.safetensors'} lacks {len(report.missing)} encoder weights, e.g. "
            f"{list(report.missing[:5])}; is it a BERT checkpoint matching config.json?"
        )
    if strict and report.unexpected:
        raise ValueError(
            f"{folder / 'model.safetensors'} has {len(report.unexpected)} tensors with no place in the encoder, "
            f"e.g. {list(report.unexpected[:5])}; pass strict=False to skip them."
        )
    tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"{folder / 'tokenizer.json'} has {tokenizer.vocab_size} tokens but config.json's "
                         f"vocab_size is {config.vocab_size}: ids past it have no embedding. The tokenizer and the "
                         "weights come from different models; put the model's own tokenizer.json beside them.")
    module = BertEncoder(config, dtype=dtype, add_pooler=add_pooler, remat=remat)
    return module, params, tokenizer
