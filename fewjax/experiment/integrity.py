"""What a checkpoint step must hold, checked by `fewjax.experiment.checkpoint` (Orbax checks none of it).

* integrity records: 64-bit fingerprints of arrays, computed on the device before the save (an exact integer sum:
  the same value for any sharding and number of processes), recomputed by `verify` from what was read back, and
  digests of the JSON values (config, metrics) saved beside them;
* `json_dict`: config and metrics as plain JSON values, refused (naming the key) before any background thread;
* `check_compatible`: one clear error for a checkpoint of another model, naming a mismatching key.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Unreadable", "check_compatible", "digest", "fingerprints", "json_dict", "leaf_name", "verify"]


class Unreadable(Exception):
    """A checkpoint step cannot be used (partial, damaged or non-finite); the message says why."""


def digest(x: Any) -> str:
    """A short digest of a JSON-able value (config, metrics), independent of key order."""
    text = json.dumps(x, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def leaf_name(path: tuple) -> str:
    """`"params/w"` for a key path (dict keys, attribute names and sequence indices alike)."""
    names = (str(next((getattr(k, a) for a in ("key", "name", "idx") if hasattr(k, a)), k)) for k in path)
    return "/".join(names) or "<root>"


def _fmix(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: every input bit flips about half the output bits."""
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(x: jax.Array) -> jax.Array:
    """The bits of `x` as uint32 words (8-byte dtypes gain a trailing axis of 2), without moving any shard."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([x.real, x.imag], axis=-1)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    size = x.dtype.itemsize
    if size < 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint8 if size == 1 else jnp.uint16).astype(jnp.uint32)
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


@jax.jit
def _fingerprint(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Two 32-bit lanes of `sum_i fmix(word_i ^ fmix(i + seed))` (exact integer sums: any sharding, any order)
    and whether `x` is finite. A changed word changes each lane with probability 1 - 2**-32."""
    finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
    w = _words(x)
    index, stride = jnp.zeros(w.shape, jnp.uint32), 1
    for axis in reversed(range(w.ndim)):  # the flat position of each word, without a reshape
        index = index + jax.lax.broadcasted_iota(jnp.uint32, w.shape, axis) * jnp.uint32(stride % 2**32)
        stride *= w.shape[axis]
    lanes = [jnp.sum(_fmix(w ^ _fmix(index * jnp.uint32(0x9E3779B9) + jnp.uint32(seed))), dtype=jnp.uint32)
             for seed in (0x5BD1E995, 0x27D4EB2F)]
    return lanes[0], lanes[1], finite


def fingerprints(tree: Any, *, refuse_nonfinite: bool = False) -> dict[str, str]:
    """`{leaf name: "dtype:fingerprint"}` for every leaf (non-finite leaves map to "nonfinite", or raise
    `ValueError` with `refuse_nonfinite`)."""
    leaves = {leaf_name(p): jnp.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
    pending = {name: _fingerprint(x) for name, x in leaves.items()}  # dispatched together, fetched below
    out = {}
    for name, (a, b, finite) in pending.items():
        if bool(finite):
            out[name] = f"{leaves[name].dtype}:{int(a):08x}{int(b):08x}"
        elif refuse_nonfinite:
            raise ValueError(f"state leaf {name!r} holds NaN or inf: not saved (a checkpoint must restore to "
                             "finite values)")
        else:
            out[name] = "nonfinite"
    return out


def verify(state: Any, metrics: Any, integrity: dict | None) -> None:
    """Raises `Unreadable` if `state` holds non-finite values or differs from the record saved with it
    (`integrity=None`: a step saved before records existed, checked for non-finite values only)."""
    found = fingerprints(state)
    bad = next((name for name, fp in found.items() if fp == "nonfinite"), None)
    if bad is not None:
        raise Unreadable(f"{bad!r} holds NaN or inf")
    if integrity is None:
        return
    for name, fp in found.items():
        saved = integrity["arrays"].get(name)
        if saved is None:
            raise Unreadable(f"no checksum was saved for {name!r}")
        if saved.split(":")[0] == fp.split(":")[0] and saved != fp:  # a dtype cast on restore cannot be verified
            raise Unreadable(f"the data of {name!r} does not match its checksum (changed or damaged after the save)")
    if integrity.get("metrics") != digest(metrics or None):
        raise Unreadable("its metrics do not match their checksum")


def _jsonable(x: Any, where: str) -> Any:
    if isinstance(x, dict):
        if bad := [k for k in x if not isinstance(k, str)]:
            raise ValueError(f"{where} keys must be strings to be saved as JSON, got {bad[0]!r}")
        return {k: _jsonable(v, f"{where}[{k!r}]") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(x)]
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, numbers.Real):
        return int(x) if isinstance(x, numbers.Integral) else float(x)
    if isinstance(x, (np.ndarray, np.generic, jax.Array)) and np.ndim(x) == 0:
        return np.asarray(x).item()
    raise ValueError(f"{where} = {x!r} ({type(x).__name__}) cannot be saved as JSON; use numbers, strings, "
                     "lists and dicts")


def json_dict(x: Any, name: str) -> dict | None:
    """`x` (a dict or an `ml_collections.ConfigDict`) with numpy/jax scalars as Python numbers; ValueError otherwise."""
    if x is None:
        return None
    if not isinstance(x, dict) and hasattr(x, "to_dict"):  # ml_collections.ConfigDict
        x = x.to_dict()
    if not isinstance(x, dict):
        raise ValueError(f"{name} must be a dict, got {type(x).__name__}")
    json.dumps(out := _jsonable(x, name))  # fails here, not in Orbax's background thread
    return out


def _shapes(tree: Any) -> dict[str, tuple]:
    """`{leaf name: shape}`; a typed PRNG key counts with its key data's shape, as Orbax saves it."""
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape, dtype = tuple(getattr(leaf, "shape", None) or ()), getattr(leaf, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            shape = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype)).shape
        shapes[leaf_name(path)] = shape
    return shapes


def check_compatible(saved_tree: Any, abstract: Any, path: Path, directory: Path) -> None:
    """Raises ValueError naming a key if the saved tree (Orbax metadata) and the target differ in keys or shapes."""
    saved, wanted = _shapes(saved_tree), _shapes(abstract)
    problems = [f"key {k!r} is in the target but not in the checkpoint" for k in wanted if k not in saved]
    problems += [f"key {k!r} is in the checkpoint but not in the target" for k in saved if k not in wanted]
    problems += [f"key {k!r} has shape {saved[k]} in the checkpoint but {wanted[k]} in the target"
                 for k in wanted if k in saved and saved[k] != wanted[k]]
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise ValueError(
            f"checkpoint {path} does not match the state being restored: {problems[0]}{more}. The workdir "
            f"{directory.parent if directory.name == 'checkpoints' else directory} holds a checkpoint of another "
            "model or config: use a new --workdir, or the config it was saved with (Checkpoints.read_config())")
