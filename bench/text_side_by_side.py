"""fewjax against PyTorch + transformers on the MiniLM encoder (issue 15, text): the sentence-embedding forward and
one text ProtoNet training step, on the same token ids, in one run, alternating the two implementations.

    PYTHONPATH=. python bench/text_side_by_side.py                      # batch 64, lengths 32 and 64, 2 rounds
    PYTHONPATH=. python bench/text_side_by_side.py --rounds 3 --forward_reps 8 --step_reps 4
    PYTHONPATH=. python bench/text_side_by_side.py --table              # the markdown table of the results file

Inputs: a real 5-way episode of `batch` sentences from the training classes of the preset each length belongs to
(32 tokens: CLINC150, `configs/text_protonet.py:clinc150_5w1s`; 64: FewRel with its entity markers, `fewrel_5w1s`),
tokenised by fewjax and padded to the length: classes 0-4, one support sentence each (labels 0..4), then
`batch - 5` queries taken from the classes in turn (59 at batch 64: 12, 12, 12, 12, 11). The ids go to the peer
through an .npz file, so both implementations see the same integers (attention mask = ids != 0 in both).

Cases:
  forward        fewjax: `jax.jit(fewjax.models.bert.make_embed_fn(module))(params, ids)`: the encoder, masked mean
                 pooling, L2 normalisation, float32, waited for with `block_until_ready`. Peer: the same pipeline
                 with `transformers.AutoModel` under `torch.inference_mode()`.
  protonet_step  fewjax: the trainer's own step, `jax.jit(fewjax.train.step.make_train_step(method, tx,
                 meta_batch_size=1), donate_argnums=0)` with `method = build_method(config)` (method protonet,
                 cosine / temperature 0.1) and `tx = outer_optimizer(config)` (Adam 2e-5 after global-norm clipping at
                 1.0) from the preset's config, fed one episode (`Task` with a leading task axis of 1), timed with
                 `bench.common.time_steps` (each step waits for its loss). Peer: forward with gradients (dropout
                 off, as fewjax's embed), prototypes, cosine logits / 0.1, cross-entropy, `loss.backward()`,
                 `clip_grad_norm_(1.0)`, `Adam(lr=2e-5).step()`, `float(loss)`. fewjax's step also does what the
                 trainer always does (the non-finite-loss guard, the step counter); the peer does not.

Timing: fewjax compiles everything first (compile seconds recorded, not timed); then for each round, for each
(case, length): fewjax's calls (in this process, `--warmup` untimed then the timed ones), then the peer's (a fresh
`bench/peers_text/encoder_peer.py` process in the torch venv: model loading, `--warmup` untimed calls, the timed
ones; `torch.set_num_threads(2)`). A, B, A, B: every round alternates the two on every (case, length), so both meet
the same background load. The 2-core machine is shared: the load average is recorded before and after each
implementation's block and only the ratio measured here, side by side, is meant to be read.

Same inputs, same numbers: the peer's forward embeddings are compared with fewjax's (`max_abs_diff_embeddings`),
and the first step's loss (at the pretrained weights) of each (`first_loss`).

Output: one JSON line per (case, length, impl) appended to `bench/results/text_side_by_side.jsonl` (`--out`):
`seconds_per_call` (median over all rounds' timed calls), `sentences_per_s` (= batch / that), `ratio` (fewjax
sentences/s over the peer's; the same in both lines), the per-round medians and ratios, the load averages,
versions, the commit. `table()` renders the latest run as markdown (README section `text_side_by_side`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if __package__ in (None, ""):  # run as a script: make `bench`, `configs` and `fewjax` importable from the repo root
    sys.path.insert(0, str(ROOT))

RESULTS = HERE / "results" / "text_side_by_side.jsonl"
PEER = HERE / "peers_text" / "encoder_peer.py"
SHARED = Path(os.environ.get("FEWJAX_SHARED") or ROOT / ".." / "shared")
DEFAULT_MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
DEFAULT_DATA = SHARED / "data"
TORCH_PYTHON = "/tmp/setfitpeer/venv/bin/python"
CASES = ("forward", "protonet_step")
PRESETS = {32: "clinc150_5w1s", 64: "fewrel_5w1s"}  # the text presets' own sequence lengths
WAYS = 5
IMPLS = ("fewjax", "pytorch")


def preset_for(length: int) -> str:
    """The preset whose sentences fill `length` tokens: FewRel (long, with entity markers) from 64, else CLINC150."""
    return PRESETS.get(length, "fewrel_5w1s" if length >= 64 else "clinc150_5w1s")


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--{name} takes comma-separated ints; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--{name} takes positive ints; got {text!r}")
    return values


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="sentences per call (the step's episode holds them all)")
    p.add_argument("--lengths", default="32,64", help="comma-separated sequence lengths")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {CASES}")
    p.add_argument("--rounds", type=int, default=2, help="A/B rounds (each implementation once per round)")
    p.add_argument("--forward_reps", type=int, default=6, help="timed forward calls per implementation and round")
    p.add_argument("--step_reps", type=int, default=3, help="timed training steps per implementation and round")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before the timed ones, every round")
    p.add_argument("--threads", type=int, default=2, help="the peer's torch.set_num_threads")
    p.add_argument("--torch_python", default=TORCH_PYTHON, help="python of the torch + transformers venv")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--data_dir", default=str(DEFAULT_DATA))
    p.add_argument("--attn", default=None, help="the peer's attn_implementation (default: transformers' own)")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSONL to append to ('-': print only)")
    p.add_argument("--table", action="store_true", help="print the table of --out and exit")
    a = p.parse_args(argv)
    try:
        a.lengths = _ints(a.lengths, "lengths")
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    a.cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    bad = [c for c in a.cases if c not in CASES]
    if bad or not a.cases:
        p.error(f"--cases {','.join(bad) or a.cases!r}: choose from {','.join(CASES)}")
    for name in ("batch", "rounds", "forward_reps", "step_reps", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1; got {getattr(a, name)}")
    if a.warmup < 0:
        p.error(f"--warmup must be >= 0; got {a.warmup}")
    if "protonet_step" in a.cases and a.batch <= WAYS:
        p.error(f"--batch {a.batch}: the step's episode needs {WAYS} support sentences and at least one query")
    return a


def peer_spec(args, *, case: str, length: int, ids_path: str, embeddings_out: str | None = None) -> dict:
    """The JSON spec `encoder_peer.py` reads for one (case, length) block."""
    return dict(case=case, batch=args.batch, length=length, ids=ids_path, threads=args.threads, warmup=args.warmup,
                reps=args.forward_reps if case == "forward" else args.step_reps, model=args.model, attn=args.attn,
                embeddings_out=embeddings_out)


# ----------------------------------------------------------------------------------------------- results
def load_records(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(path: Path = RESULTS) -> str:
    """Markdown: case, length, fewjax and PyTorch sentences/s, the ratio (pooled, and each round's), the load range
    over the blocks; the latest run in `path`."""
    rows = load_records(path)
    if not rows:
        return "(no bench/results/text_side_by_side.jsonl yet: `PYTHONPATH=. python bench/text_side_by_side.py`)"
    run = rows[-1]["run"]
    latest = {(r["case"], r["length"], r["impl"]): r for r in rows if r["run"] == run}
    out = ["| case | length | fewjax sentences/s | PyTorch sentences/s | fewjax / PyTorch | per-round ratios | "
           "load (1 min) | GFLOP / call | fewjax % of GEMM peak | PyTorch % of GEMM peak |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    dash = lambda v: "-" if v is None else v  # noqa: E731
    keys = sorted({(c, n) for c, n, _ in latest}, key=lambda k: (CASES.index(k[0]) if k[0] in CASES else 9, k[1]))
    for case, length in keys:
        f, t = latest.get((case, length, "fewjax")), latest.get((case, length, "pytorch"))
        if f is None or t is None:
            continue
        loads = [x for r in (f, t) for x in (r["load_before"], r["load_after"]) if x is not None]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"
        out.append(f"| {case} | {length} | {f['sentences_per_s']:.1f} | {t['sentences_per_s']:.1f} | "
                   f"**{f['ratio']:.2f}x** | {', '.join(f'{x:.2f}' for x in f.get('round_ratios', []))} | {load} | "
                   f"{dash(f.get('gflop_per_call'))} | {dash(f.get('percent_of_gemm_peak'))} | "
                   f"{dash(t.get('percent_of_gemm_peak'))} |")
    r0 = latest[next(iter(latest))]
    out += ["", f"Batch {r0['batch']}, {r0['rounds']} alternating rounds, run {run} at commit {r0['commit']}; "
                f"PyTorch {r0['peer_versions'].get('torch')}, transformers {r0['peer_versions'].get('transformers')} "
                f"({r0['peer_threads']} threads), jax {r0['versions'].get('jax')}; float32 GEMM peak in the same run: "
                f"{peak_text(r0.get('gemm_peak_gflops'))}. GFLOP per call is XLA's count of fewjax's "
                "program; the peer does the same work."]
    return "\n".join(out)


def combine(case: str, length: int, blocks: dict, *, batch: int, extra: dict) -> list[dict]:
    """One record per implementation from its per-round blocks `{impl: [{"times", "load_before", "load_after"}]}`."""
    med = {impl: statistics.median([t for b in blocks[impl] for t in b["times"]]) for impl in IMPLS}
    ratio = med["pytorch"] / med["fewjax"]  # fewjax sentences/s over the peer's
    round_ratios = [round(statistics.median(p["times"]) / statistics.median(f["times"]), 3)
                    for f, p in zip(blocks["fewjax"], blocks["pytorch"])]
    out = []
    for impl in IMPLS:
        bs = blocks[impl]
        out.append(dict(
            impl=impl, case=case, length=length, batch=batch, seconds_per_call=round(med[impl], 5),
            sentences_per_s=round(batch / med[impl], 2), ratio=round(ratio, 3), round_ratios=round_ratios,
            round_seconds=[round(statistics.median(b["times"]), 5) for b in bs],
            times=[[round(t, 5) for t in b["times"]] for b in bs],
            load_before=bs[0]["load_before"][0] if bs[0]["load_before"] else None,
            load_after=bs[-1]["load_after"][0] if bs[-1]["load_after"] else None,
            round_loads=[[b["load_before"], b["load_after"]] for b in bs], **extra))
    return out


# ----------------------------------------------------------------------------------------------- inputs
def episode_ids(length: int, batch: int, *, model: str, data_dir: str):
    """Token ids `[batch, length]` int32 (5 support rows, then the queries), support and query labels, preset."""
    import numpy as np

    from configs.text_protonet import get_config
    from fewjax.text.datasets import make_text_source

    preset = preset_for(length)
    c = get_config(preset)
    c.text.model, c.data_dir, c.text.max_length = model, data_dir, length
    source = make_text_source(c, "train")
    per_class = [source.class_examples(k) for k in range(WAYS)]
    support = [per_class[k][0] for k in range(WAYS)]
    query_y = np.arange(batch - WAYS) % WAYS
    taken = [1] * WAYS
    query = []
    for k in query_y:
        query.append(per_class[k][taken[k] % len(per_class[k])])
        taken[k] += 1
    ids = np.stack(support + query).astype(np.int32)
    return ids, np.arange(WAYS, dtype=np.int32), query_y.astype(np.int32), preset


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "fewjax"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return head + ("+dirty-fewjax" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


# ----------------------------------------------------------------------------------------------- fewjax
def xla_gflop(compiled) -> float | None:
    """XLA's count of a compiled call's floating-point operations, in GFLOP (the same work the peer does)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", 0.0))
    return round(flops / 1e9, 3) if flops > 0 else None


def peak_text(peak: float | None) -> str:
    return f"{peak} GFLOP/s" if peak else "not measured"


def percent_of_peak(gflop: float | None, seconds: float, peak: float | None) -> float | None:
    return round(100 * gflop / seconds / peak, 1) if gflop and peak else None


class FewjaxCase:
    """A compiled fewjax call for one (case, length) and its inputs; `run(warmup, reps)` -> timed seconds."""

    def __init__(self, case: str, ids, support_y, query_y, preset: str, *, model: str, data_dir: str):
        import jax
        import jax.numpy as jnp

        self.case = case
        t0 = time.perf_counter()
        if case == "forward":
            from fewjax.models import bert
            from fewjax.text.encoder import load_pretrained_cached

            module, params, tok = load_pretrained_cached(model)
            if tok.pad_id != 0:
                raise ValueError(f"the tokenizer pads with {tok.pad_id}; the peer masks ids != 0")
            self.params, self.ids = params, jnp.asarray(ids)
            self.fn = jax.jit(bert.make_embed_fn(module, pad_id=tok.pad_id)).lower(self.params, self.ids).compile()
            self.first = self.fn(self.params, self.ids).block_until_ready()
            self.first_loss = None
            self.impl = "jax.jit(fewjax.models.bert.make_embed_fn(module)): encoder + masked mean + L2, float32"
        else:
            from configs.text_protonet import get_config
            from fewjax.experiment.state import init_state, outer_optimizer
            from fewjax.methods import build_method, resolve_platform
            from fewjax.train.step import make_train_step
            from fewjax.types import Batch, Task

            c = get_config(preset)
            c.text.model, c.data_dir, c.text.max_length, c.meta_batch_size = model, data_dir, ids.shape[1], 1
            c = resolve_platform(c)
            method = build_method(c)
            tx = outer_optimizer(c)
            self.state = init_state(method.init(jax.random.key(0), None), tx, ema=False)
            x = jnp.asarray(ids)[None]
            n_s = support_y.shape[0]
            self.task = Task(Batch(x[:, :n_s], jnp.asarray(support_y)[None]),
                             Batch(x[:, n_s:], jnp.asarray(query_y)[None]))
            step = jax.jit(make_train_step(method, tx, meta_batch_size=1), donate_argnums=0)
            self.fn = step.lower(self.state, self.task).compile()
            self.state, metrics = self.fn(self.state, self.task)
            self.first_loss = float(metrics["loss"])  # at the pretrained weights
            self.first = None
            self.impl = (f"the trainer's step: jax.jit(make_train_step(build_method(config), outer_optimizer(config), "
                         f"meta_batch_size=1), donate_argnums=0), configs/text_protonet.py:{preset} "
                         f"(method={c.method}, distance={c.distance}, temperature={c.temperature}, "
                         f"{c.optim.name} lr={c.optim.lr}, grad_clip={c.optim.grad_clip}), one host-fed episode")
        self.compile_s = time.perf_counter() - t0
        self.gflop = xla_gflop(self.fn)

    def run(self, warmup: int, reps: int) -> list[float]:
        import jax

        if self.case == "forward":
            times = []
            for i in range(warmup + reps):
                t0 = time.perf_counter()
                self.fn(self.params, self.ids).block_until_ready()
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
            return times
        from bench.common import time_steps

        times, self.state = time_steps(self.fn, self.state, [self.task], warmup=warmup, timed=reps)
        jax.block_until_ready(self.state)
        return times


# ----------------------------------------------------------------------------------------------- main
def run_peer(args, spec: dict) -> dict:
    cmd = [args.torch_python, str(PEER), json.dumps(spec)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=""),
                       timeout=1800)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"the peer failed (exit {p.returncode}) on {spec}:\n{tail}")
    return json.loads(lines[-1])


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.table:
        print(table(args.out))
        return []
    import jax
    import numpy as np

    from bench.common import machine, versions

    from bench.side_by_side import measure_peak

    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    peak = measure_peak(600.0)  # float32 GEMM GFLOP/s now, in its own process
    start_load = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="text_sbs_"))
    inputs, cases = {}, {}
    for length in args.lengths:
        ids, sy, qy, preset = episode_ids(length, args.batch, model=args.model, data_dir=args.data_dir)
        path = tmp / f"ids_{length}.npz"
        np.savez(path, ids=ids, support_y=sy, query_y=qy)
        inputs[length] = (ids, sy, qy, preset, str(path))
        for case in args.cases:
            cases[case, length] = FewjaxCase(case, ids, sy, qy, preset, model=args.model, data_dir=args.data_dir)
            print(f"compiled fewjax {case} length {length}: {cases[case, length].compile_s:.1f} s "
                  f"(first loss {cases[case, length].first_loss})", file=sys.stderr, flush=True)
    blocks = {key: {impl: [] for impl in IMPLS} for key in cases}
    peer_last = {}
    for r in range(args.rounds):
        for (case, length), fj in cases.items():
            reps = args.forward_reps if case == "forward" else args.step_reps
            lb = load_average()
            times = fj.run(args.warmup, reps)
            blocks[case, length]["fewjax"].append(dict(times=times, load_before=lb, load_after=load_average()))
            emb = str(tmp / f"emb_{case}_{length}.npz") if case == "forward" and r == 0 else None
            lb = load_average()
            rec = run_peer(args, peer_spec(args, case=case, length=length, ids_path=inputs[length][4],
                                           embeddings_out=emb))
            blocks[case, length]["pytorch"].append(dict(times=rec["times"], load_before=lb,
                                                        load_after=load_average()))
            peer_last.setdefault((case, length), rec)
            print(f"round {r}: {case} {length}: fewjax {statistics.median(times):.3f} s, "
                  f"pytorch {rec['seconds_per_call']:.3f} s, load {lb}", file=sys.stderr, flush=True)
    records = []
    common = dict(run=run_id, rounds=args.rounds, warmup=args.warmup, commit=commit(), versions=versions(),
                  machine=machine(), start_load=start_load, end_load=load_average())
    for (case, length), fj in cases.items():
        peer = peer_last[case, length]
        check = {}
        if case == "forward":
            theirs = np.load(tmp / f"emb_{case}_{length}.npz")["embeddings"]
            check["max_abs_diff_embeddings"] = float(np.abs(np.asarray(fj.first) - theirs).max())
        else:
            check["first_loss"] = {"fewjax": fj.first_loss, "pytorch": peer["first_loss"]}
        extra = dict(common, preset=inputs[length][3], fewjax_impl=fj.impl, fewjax_compile_s=round(fj.compile_s, 2),
                     peer_versions=peer["versions"], peer_threads=peer["threads"],
                     peer_attn_implementation=peer["attn_implementation"], peer_optimizer=peer["optimizer"],
                     peer_model_load_s=peer["model_load_s"], backend=jax.default_backend(), gflop_per_call=fj.gflop,
                     gemm_peak_gflops=peak, **check)
        for rec in combine(case, length, blocks[case, length], batch=args.batch, extra=extra):
            rec["percent_of_gemm_peak"] = percent_of_peak(fj.gflop, rec["seconds_per_call"], peak)
            print(json.dumps(rec), flush=True)
            records.append(rec)
            if str(args.out) != "-":
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
    if str(args.out) != "-":
        print(table(args.out))
    return records


if __name__ == "__main__":
    main()
