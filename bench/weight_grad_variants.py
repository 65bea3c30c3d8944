"""Conv weight-gradient formulations on XLA:CPU, side by side at the shapes Conv4 meets (W1-W4).

    PYTHONPATH=. python bench/weight_grad_variants.py [--repeats 5]

`fewjax.models.conv.weight_grad` (the library's: `kw` column shifts concatenated once, `kh` matrix products)
against the alternatives one might try instead:
- `xla`: JAX's own rule (the VJP of `lax.conv_general_dilated`);
- `transposed_conv`: the weight gradient as a forward convolution with batch and channels swapped (forward
  convolutions take XLA:CPU's fast YNNPACK path);
- `flat_offsets`: dy placed on the padded grid and both flattened, so each of the `kh * kw` taps is a contiguous
  row range of the padded input (no strided copies, ~15-65% more multiply-adds on the zero border);
- `h_major`: the library's, with the image rows as the major axis, so each kernel row's operand is a contiguous
  block of the column shifts instead of a strided copy;
- `dy_shift`: the kernel rows' shifts applied to the output gradient instead of the input (`[N, H', Wo, kh*D]`),
  so one product `[kw*C, N*H'*Wo] @ [N*H'*Wo, kh*D]` gives every tap and nothing of the input is sliced.
Every variant is checked against the library's result. Prints a JSON line per shape and appends it to
`bench/results/weight_grad_variants.jsonl` with the load average (the figures are relative: one process, one
shape after another).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fewjax.models.conv import weight_grad

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce import append_record  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "weight_grad_variants.jsonl"
SHAPES = [(600, 28, 28, 1, 64), (600, 14, 14, 64, 64), (600, 7, 7, 64, 64), (600, 3, 3, 64, 64),
          (80, 14, 14, 64, 64), (5, 14, 14, 64, 64)]
"""(images, height, width, in channels, out channels): W4's 600-image episode per layer, a MAML task's 80 images
and its 5-image support set."""


def xla(x, dy, kernel, padding):
    w = jnp.zeros(kernel + (x.shape[-1], dy.shape[-1]), x.dtype)
    conv = lambda w: lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))  # noqa: E731
    return jax.vjp(conv, w)[1](dy)[0]


def transposed_conv(x, dy, kernel, padding):
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    out = lax.conv_general_dilated(xp.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))  # [C, kh, kw, D]
    return out.transpose(1, 2, 0, 3)


def flat_offsets(x, dy, kernel, padding):
    kh, kw = kernel
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    n, hp, wp, c = xp.shape
    m = n * hp * wp
    g = jnp.pad(dy, ((0, 0), (0, hp - dy.shape[1]), (0, wp - dy.shape[2]), (0, 0))).reshape(m, -1)
    flat = jnp.pad(xp.reshape(m, c), ((0, (kh - 1) * wp + kw - 1), (0, 0)))
    taps = [flat[i * wp + j: i * wp + j + m].T @ g for i in range(kh) for j in range(kw)]
    return jnp.stack(taps).reshape(kh, kw, c, -1)


def h_major(x, dy, kernel, padding):
    kh, kw = kernel
    xp = jnp.swapaxes(jnp.pad(x, ((0, 0), *padding, (0, 0))), 0, 1)  # [H', N, W', C]
    n, ho, wo, d = dy.shape
    columns = jnp.concatenate([xp[:, :, j: j + wo] for j in range(kw)], axis=-1)  # [H', N, Wo, kw*C]
    dy_rows = jnp.swapaxes(dy, 0, 1).reshape(ho * n * wo, d)
    taps = [columns[i: i + ho].reshape(ho * n * wo, -1).T @ dy_rows for i in range(kh)]
    return jnp.stack(taps).reshape(kh, kw, x.shape[-1], d)


def dy_shift(x, dy, kernel, padding):
    kh, kw = kernel
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    n, ho, wo, d = dy.shape
    hp = xp.shape[1]
    columns = jnp.concatenate([xp[:, :, j: j + wo] for j in range(kw)], axis=-1)  # [N, H', Wo, kw*C]
    shifted = jnp.concatenate([jnp.pad(dy, ((0, 0), (i, hp - ho - i), (0, 0), (0, 0))) for i in range(kh)], axis=-1)
    out = columns.reshape(n * hp * wo, -1).T @ shifted.reshape(n * hp * wo, kh * d)  # [kw*C, kh*D]
    return out.reshape(kw, x.shape[-1], kh, d).transpose(2, 0, 1, 3)


VARIANTS = {"library": lambda x, dy, k, p: weight_grad(x, dy, k, p), "xla": xla, "transposed_conv": transposed_conv,
            "flat_offsets": flat_offsets, "h_major": h_major, "dy_shift": dy_shift}


def median_ms(fn, x, dy, repeats):
    f = jax.jit(fn, static_argnums=(2, 3))
    out = f(x, dy, (3, 3), ((1, 1), (1, 1)))
    out.block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(x, dy, (3, 3), ((1, 1), (1, 1))).block_until_ready()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    for n, h, w, c, d in SHAPES:
        x = jnp.asarray(rng.normal(size=(n, h, w, c)), jnp.float32)
        dy = jnp.asarray(rng.normal(size=(n, h, w, d)), jnp.float32)
        gflop = 2 * n * h * w * c * d * 9 / 1e9
        row = {"bench": "weight_grad_variants", "shape": [n, h, w, c, d], "gflop": round(gflop, 3)}
        ref = None
        for name, fn in VARIANTS.items():
            ms, out = median_ms(fn, x, dy, args.repeats)
            ref = out if ref is None else ref
            err = float(jnp.max(jnp.abs(out - ref)) / jnp.max(jnp.abs(ref)))
            if err > 1e-4:
                raise AssertionError(f"{name} at {row['shape']}: relative error {err:.1e}")
            row[f"{name}_ms"] = round(ms, 2)
        row["loadavg_1m"] = round(os.getloadavg()[0], 2)
        append_record(OUT, row)


if __name__ == "__main__":
    main()
