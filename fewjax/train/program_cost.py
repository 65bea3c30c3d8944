"""What one device runs per call of a compiled program: FLOPs counted through its loops, bytes its collectives move.

XLA's `compiled.cost_analysis()` counts the body of a while loop once, whatever its trip count, so it cannot
compare a program that scans over 8 tasks with one that scans over 1. `program_cost` reads the optimized HLO
text (`compiled.as_text()`, the per-device module after SPMD partitioning) and counts every computation as
often as it runs: a while body times its known trip count, a fusion or call once per call site.

FLOPs follow XLA's conventions: a convolution or a dot costs 2 per multiply-add; an elementwise arithmetic op
1 per output element; a reduce 1 per input element. Layout ops (copies, slices, transposes, bitcasts) are free.
Collectives (all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute) count the larger of their
operands' and their result's bytes: what one device sends or receives per call, up to the algorithm's factor.
A library call (a GPU program's convolutions and matrix products become cuDNN / cuBLAS custom-calls) has no HLO
body to count: such calls are counted in `library_calls`, and the FLOPs are then a lower bound.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fewjax.train.program_cost import program_cost
    >>> f = jax.jit(lambda w, x: jax.lax.scan(lambda c, xi: (c + (w @ xi).sum(), None), 0.0, x)[0])
    >>> compiled = f.lower(jnp.ones((4, 8)), jnp.ones((10, 8, 2))).compile()
    >>> cost = program_cost(compiled.as_text())
    >>> cost.flops >= 10 * 2 * 4 * 8 * 2, cost.collective_bytes   # the dot counted 10 times
    (True, 0)
"""
from __future__ import annotations

import functools
import json
import math
import re
from typing import NamedTuple

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
               "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "s4": 1, "u4": 1, "f8e4m3fn": 1, "f8e5m2": 1}
ELEMENTWISE = frozenset(
    "add subtract multiply divide remainder maximum minimum negate abs sign exponential exponential-minus-one log "
    "log-plus-one sqrt rsqrt cbrt tanh logistic power atan2 sine cosine tan floor ceil round-nearest-afz "
    "round-nearest-even compare select clamp and or xor not shift-left shift-right-logical shift-right-arithmetic "
    "is-finite erf".split())
CALLED = re.compile(r"\b(?:calls|to_apply|body|condition|true_computation|false_computation)=(%[\w.\-]+)")
BRANCHES = re.compile(r"\bbranch_computations=\{([^}]*)\}")
LIBRARY_MATH = re.compile(r'custom_call_target="[^"]*(?:cudnn|cublas|gemm|conv|matmul)', re.IGNORECASE)
ARRAY = re.compile(r"([a-z]\w*)\[([\d,]*)\]")


class ProgramCost(NamedTuple):
    flops: float  # per device, loops counted by trip count
    collective_bytes: int  # per device, summed over every collective executed
    collectives: dict  # kind -> [calls, bytes] (e.g. {"all-reduce": [1, 8_800]})
    largest_collective: int  # bytes of the largest single collective (an activation would show here)
    unknown_trip_counts: int  # while loops without a known trip count (counted once)
    library_calls: int = 0  # executed custom-calls into a math library (cuDNN, cuBLAS): FLOPs not counted


class _Instruction(NamedTuple):
    name: str
    type: str
    opcode: str
    operands: tuple
    attributes: str


def program_cost(hlo_text: str) -> ProgramCost:
    """The per-device `ProgramCost` of an optimized HLO module (`jitted.lower(...).compile().as_text()`)."""
    computations, entry = _parse(hlo_text)
    totals = _Totals(computations)
    flops, collectives, largest, unknown, library = totals.of(entry)
    return ProgramCost(flops=flops, collective_bytes=int(sum(b for _, b in collectives.values())),
                       collectives={k: [int(c), int(b)] for k, (c, b) in sorted(collectives.items())},
                       largest_collective=int(largest), unknown_trip_counts=int(unknown),
                       library_calls=int(library))


def compiled_cost(compiled) -> dict:
    """`program_cost` of a `jax.stages.Compiled` as a dict, with XLA's own `cost_analysis()` FLOPs beside it."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return {**program_cost(compiled.as_text())._asdict(), "xla_flops_loop_bodies_once": float(analysis["flops"])}


class _Totals:
    """Costs of each computation including what it calls, memoised (a computation may be called many times)."""

    def __init__(self, computations: dict):
        self.computations = computations
        self.of = functools.lru_cache(maxsize=None)(self._of)

    def _of(self, name: str):
        instructions = self.computations[name]
        shapes = {i.name: i.type for i in instructions}
        flops, largest, unknown, library = 0.0, 0.0, 0, 0
        collectives: dict = {}
        for inst in instructions:
            flops += _flops(inst, shapes)
            library += inst.opcode == "custom-call" and bool(LIBRARY_MATH.search(inst.attributes))
            kind = _collective(inst.opcode)
            if kind:
                moved = _moved_bytes(inst, shapes)
                calls, total = collectives.get(kind, (0, 0))
                collectives[kind] = (calls + 1, total + moved)
                largest = max(largest, moved)
            for callee, times, known in _callees(inst):
                f, c, big, u, lib = self.of(callee)
                flops, library = flops + times * f, library + times * lib
                for k, (n, b) in c.items():
                    calls, total = collectives.get(k, (0, 0))
                    collectives[k] = (calls + times * n, total + times * b)
                largest, unknown = max(largest, big), unknown + u + (0 if known else 1)
        return flops, collectives, largest, unknown, library


def _callees(inst: _Instruction):
    """(computation, times it runs per execution of `inst`, trip count known) for what `inst` calls."""
    if inst.opcode in ("reduce", "reduce-window", "scatter", "select-and-scatter", "sort", "map") or _collective(
            inst.opcode):
        return []  # their to_apply is the scalar combiner, priced in `_flops`
    if inst.opcode == "while":
        trips = _trip_count(inst.attributes)
        body = re.search(r"\bbody=(%[\w.\-]+)", inst.attributes).group(1)[1:]
        cond = re.search(r"\bcondition=(%[\w.\-]+)", inst.attributes).group(1)[1:]
        n = 1 if trips is None else trips
        return [(body, n, trips is not None), (cond, n + 1, True)]
    branches = BRANCHES.search(inst.attributes)
    names = [m[1:] for m in CALLED.findall(inst.attributes)]
    if branches:  # conditional: charge every branch (an upper bound)
        names += [b.strip()[1:] for b in branches.group(1).split(",") if b.strip()]
    return [(n, 1, True) for n in names]


def _trip_count(attributes: str) -> int | None:
    match = re.search(r'backend_config=(\{.*\})', attributes)
    if not match:
        return None
    try:
        config = json.loads(match.group(1))
    except json.JSONDecodeError:
        found = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', match.group(1))
        return int(found.group(1)) if found else None
    n = config.get("known_trip_count", {}).get("n")
    return int(n) if n is not None else None


def _collective(opcode: str) -> str | None:
    base = opcode[:-len("-start")] if opcode.endswith("-start") else opcode
    return base if base in COLLECTIVES else None


def _moved_bytes(inst: _Instruction, shapes: dict) -> int:
    sent = sum(_bytes(shapes.get(o, "")) for o in inst.operands)
    received = _bytes(inst.type)
    if inst.opcode.endswith("-start") and inst.type.startswith("("):
        received -= sent  # async starts return (operands, results, ...)
    return max(sent, received)


def _flops(inst: _Instruction, shapes: dict) -> float:
    op = inst.opcode
    if op == "convolution":
        return 2.0 * _convolution_fmas(inst, shapes)
    if op == "dot":
        lhs = _dims(shapes[inst.operands[0]])
        found = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", inst.attributes)
        contracted = [int(d) for d in found.group(1).split(",") if d] if found else []
        return 2.0 * _elements(inst.type) * math.prod(lhs[d] for d in contracted)
    if op in ELEMENTWISE:
        return float(_elements(inst.type))
    if op in ("reduce", "reduce-window"):
        return float(sum(_elements(shapes.get(o, "")) for o in inst.operands[: len(inst.operands) // 2]))
    return 0.0


def _convolution_fmas(inst: _Instruction, shapes: dict) -> float:
    """Multiply-adds of a convolution, skipping window positions on padding or dilation holes (as XLA counts)."""
    lhs, rhs, out = _dims(shapes[inst.operands[0]]), _dims(shapes[inst.operands[1]]), _dims(inst.type)
    lhs_labels, rhs_labels, out_labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", inst.attributes).groups()
    window = dict(re.findall(r"(\w+)=([\dx_\-]+)", re.search(r"window=\{([^}]*)\}", inst.attributes).group(1)))
    spatial = len(lhs_labels) - 2

    def per_dim(key, default):
        return [int(v) for v in window[key].split("x")] if key in window else [default] * spatial

    strides, lhs_dilate, rhs_dilate = per_dim("stride", 1), per_dim("lhs_dilate", 1), per_dim("rhs_dilate", 1)
    pads = [int(p.split("_")[0]) for p in window["pad"].split("x")] if "pad" in window else [0] * spatial
    valid = 1
    for d in range(spatial):
        size, kernel, outputs = (lhs[lhs_labels.index(str(d))], rhs[rhs_labels.index(str(d))],
                                 out[out_labels.index(str(d))])
        last = (size - 1) * lhs_dilate[d]
        valid *= sum(1 for o in range(outputs) for k in range(kernel)
                     if 0 <= (p := o * strides[d] + k * rhs_dilate[d] - pads[d]) <= last and p % lhs_dilate[d] == 0)
    groups = re.search(r"feature_group_count=(\d+)", inst.attributes)
    batch_groups = re.search(r"batch_group_count=(\d+)", inst.attributes)
    in_features = lhs[lhs_labels.index("f")] // (int(groups.group(1)) if groups else 1)
    batch = lhs[lhs_labels.index("b")] // (int(batch_groups.group(1)) if batch_groups else 1)
    return float(valid * in_features * batch * out[out_labels.index("f")])


def _dims(type_: str) -> list[int]:
    match = ARRAY.search(type_)
    return [int(d) for d in match.group(2).split(",") if d] if match else []


def _elements(type_: str) -> int:
    return sum(math.prod(int(d) for d in dims.split(",") if d) for _, dims in ARRAY.findall(_strip_layouts(type_)))


def _bytes(type_: str) -> int:
    return sum(DTYPE_BYTES.get(dtype, 4) * math.prod(int(d) for d in dims.split(",") if d)
               for dtype, dims in ARRAY.findall(_strip_layouts(type_)))


def _strip_layouts(type_: str) -> str:
    return re.sub(r"\{[^{}]*\}", "", type_)


def _parse(text: str) -> tuple[dict, str]:
    """{computation name: [instructions]} and the entry computation's name."""
    computations: dict = {}
    entry, current = None, None
    for line in text.splitlines():
        header = re.match(r"^(ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$", line)
        if header and not line.startswith(" "):
            current = header.group(2)
            computations[current] = []
            entry = current if header.group(1) else entry
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is not None:
            inst = _instruction(line)
            if inst is not None:
                computations[current].append(inst)
    if entry is None:
        raise ValueError("program_cost: no ENTRY computation in this HLO text; pass compiled.as_text().")
    return computations, entry


def _instruction(line: str) -> _Instruction | None:
    match = re.match(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*", line)
    if not match:
        return None
    rest = line[match.end():]
    if rest.startswith("("):
        end = _closing(rest, 0)
        type_, rest = rest[: end + 1], rest[end + 1:].lstrip()
    else:
        type_, _, rest = rest.partition(" ")
    opcode_match = re.match(r"([a-z][\w\-]*)\(", rest)
    if not opcode_match:
        return None
    start = opcode_match.end() - 1
    end = _closing(rest, start)
    operands = tuple(re.findall(r"%([\w.\-]+)", rest[start:end + 1]))
    return _Instruction(match.group(1), type_, opcode_match.group(1), operands, rest[end + 1:])


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the one at `start`."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return len(text) - 1
