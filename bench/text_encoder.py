"""Sentences per second of the jitted BERT encoder forward pass (embedding: encoder + masked mean + L2).

Run (about a minute on a 2-core CPU):
    PYTHONPATH=. python bench/text_encoder.py [--model PATH_OR_HUB_NAME] [--dtypes float32,bfloat16]

On a shared machine, check `loadavg_1m` in the output: above the core count,
other processes competed for the CPU and the numbers are lower bounds.

Prints one JSON line per (dtype, batch, length) case and writes them all to
bench/results/text_encoder.json. Inputs are real CLINC-like sentences
tokenised and padded to the case's length (padding is computed like any token,
so only the shape matters for speed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from fewjax.models import bert, pretrained

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = Path(os.environ.get("FEWJAX_SHARED", ROOT / ".." / "shared")) / "models" / "all-MiniLM-L6-v2"
SENTENCES = [
    "what is the weather like in boston tomorrow",
    "please transfer two hundred dollars from my checking to my savings account",
    "book a table for four at an italian restaurant near me tonight",
    "how do i reset the pin code of my credit card",
]


def bench_case(module, params, tok, *, batch: int, length: int, min_seconds: float) -> dict:
    embed = jax.jit(bert.make_embed_fn(module, pad_id=tok.pad_id))
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(batch)]
    ids = jnp.asarray(tok(texts, max_length=length))
    t0 = time.perf_counter()
    embed(params, ids).block_until_ready()
    compile_s = time.perf_counter() - t0
    reps, t0 = 0, time.perf_counter()
    while True:
        embed(params, ids).block_until_ready()
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds and reps >= 3:
            break
    return {
        "bench": "text_encoder_forward",
        "model": f"L{module.config.num_hidden_layers}-H{module.config.hidden_size}",
        "dtype": jnp.dtype(module.dtype).name,
        "batch": batch,
        "length": length,
        "sentences_per_s": round(batch * reps / elapsed, 1),
        "ms_per_batch": round(1000 * elapsed / reps, 2),
        "reps": reps,
        "compile_s": round(compile_s, 2),
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # > cpus: other processes shared the CPU
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lengths", default="64,128")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--min_seconds", type=float, default=5.0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "text_encoder.json"))
    args = p.parse_args(argv)
    module, params, tok = pretrained.load_pretrained(args.model)
    results = []
    for dtype in args.dtypes.split(","):
        mod = bert.BertEncoder(module.config, dtype=jnp.dtype(dtype))
        for length in (int(x) for x in args.lengths.split(",")):
            r = bench_case(mod, params, tok, batch=args.batch, length=length, min_seconds=args.min_seconds)
            r["model"] = Path(args.model).name
            print(json.dumps(r), flush=True)
            results.append(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": platform.python_version(), "jax": jax.__version__, "results": results},
                              indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
