"""PyTorch + transformers peer of fewjax's MiniLM encoder forward and text ProtoNet training step (issue 15).

Runs in the torch virtualenv (see README.md beside this file), never in fewjax's; it imports no fewjax. The driver,
`bench/text_side_by_side.py` (fewjax's venv), writes the token ids to an .npz file and starts this script once per
(case, length, round):

    /tmp/setfitpeer/venv/bin/python bench/peers_text/encoder_peer.py '{"case": "forward", "ids": "x.npz", ...}'
    echo '{...}' | /tmp/setfitpeer/venv/bin/python bench/peers_text/encoder_peer.py -

Spec (JSON on argv[1], or on stdin when argv[1] is "-" or absent); defaults in SPEC_DEFAULTS:
  case      "forward": the sentence-embedding forward under `torch.inference_mode()`: `AutoModel` (the encoder),
            attention-masked mean pooling over the tokens, L2 normalisation (sentence-transformers' pipeline and
            `fewjax.models.bert.make_embed_fn`'s), on all `batch` rows.
            "protonet_step": one training step on one 5-way episode made of the batch: the first `support` rows are
            the support set (labels `support_y`), the rest the queries (`query_y`); one forward over all rows (as
            fewjax's `embed_episode`), class-mean prototypes, cosine logits / temperature (fewjax's `normalize`:
            v / sqrt(|v|^2 + 1e-8)), cross-entropy, `loss.backward()`, `clip_grad_norm_(grad_clip)` (the text
            presets' optim.grad_clip = 1.0), `Adam(lr).step()`. Dropout off (`model.eval()`), as fewjax's
            deterministic embed; gradients on every encoder weight.
  ids       the .npz the driver wrote: `ids` [batch, length] int (0 = padding; attention mask = ids != 0),
            `support_y`, `query_y` (protonet_step).
  batch, length   checked against the ids' shape.
  reps, warmup    timed calls and untimed calls before them; the median of the timed ones is reported.
  threads   `torch.set_num_threads(threads)` (2: the machine's cores; XLA:CPU uses them all too).
  model     the all-MiniLM-L6-v2 folder; `attn` an `attn_implementation` for `from_pretrained` (null: transformers'
            default, "sdpa" in transformers 5).
  embeddings_out   optional .npz path: the forward case writes its embeddings there (the driver compares them with
            fewjax's on the same ids).

Output: one JSON line on stdout: impl, case, batch, length, median seconds per call, sentences/s, every timed call,
the first call's loss (protonet_step: at the pretrained weights, to compare with fewjax's first step), torch and
transformers versions, threads, the attention implementation, load average before and after.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder; nothing is fetched
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FEWJAX_SHARED") or ROOT / ".." / "shared")
CASES = ("forward", "protonet_step")
SPEC_DEFAULTS = dict(case="forward", batch=64, length=32, reps=5, warmup=1, threads=2, ids=None,
                     model=str(SHARED / "models" / "all-MiniLM-L6-v2"), attn=None, temperature=0.1, lr=2e-5,
                     grad_clip=1.0, embeddings_out=None)


def parse_spec(argv: list[str], stdin=None) -> dict:
    """The spec from argv[0] (JSON) or stdin ("-" or no argument), with SPEC_DEFAULTS filled in and checked."""
    text = argv[0] if argv and argv[0] != "-" else (stdin or sys.stdin).read()
    spec = json.loads(text)
    if not isinstance(spec, dict):
        raise ValueError(f"the spec must be a JSON object; got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown spec keys {unknown}; known: {sorted(SPEC_DEFAULTS)}")
    spec = {**SPEC_DEFAULTS, **spec}
    if spec["case"] not in CASES:
        raise ValueError(f"case={spec['case']!r}: choose one of {CASES}")
    for key in ("batch", "length", "reps", "threads"):
        if not isinstance(spec[key], int) or spec[key] < 1:
            raise ValueError(f"{key}={spec[key]!r}: must be an int >= 1")
    if not isinstance(spec["warmup"], int) or spec["warmup"] < 0:
        raise ValueError(f"warmup={spec['warmup']!r}: must be an int >= 0")
    if not spec["ids"]:
        raise ValueError("ids: the .npz of token ids the driver wrote is required")
    return spec


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv=None) -> dict:
    spec = parse_spec(sys.argv[1:] if argv is None else argv)
    load_before = load_average()
    import numpy as np
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModel

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    data = np.load(spec["ids"])
    ids = torch.from_numpy(np.asarray(data["ids"], dtype=np.int64))
    if tuple(ids.shape) != (spec["batch"], spec["length"]):
        raise ValueError(f"ids shape {tuple(ids.shape)} != (batch, length) = ({spec['batch']}, {spec['length']})")
    mask = (ids != 0).long()
    kwargs = {} if spec["attn"] is None else {"attn_implementation": spec["attn"]}
    t0 = time.perf_counter()
    model = AutoModel.from_pretrained(spec["model"], **kwargs)
    model.eval()  # no dropout: fewjax's embed is deterministic, in training too
    load_s = time.perf_counter() - t0

    def embed(x, m):
        hidden = model(input_ids=x, attention_mask=m).last_hidden_state
        w = m.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=-1, eps=1e-12)

    first_loss, first_out = None, None
    if spec["case"] == "forward":
        def call():
            with torch.inference_mode():
                return embed(ids, mask)
    else:
        support_y = torch.from_numpy(np.asarray(data["support_y"], dtype=np.int64))
        query_y = torch.from_numpy(np.asarray(data["query_y"], dtype=np.int64))
        n_s, ways = support_y.shape[0], int(support_y.max()) + 1
        if n_s + query_y.shape[0] != spec["batch"]:
            raise ValueError(f"support {n_s} + query {query_y.shape[0]} rows != batch {spec['batch']}")
        onehot = F.one_hot(support_y, ways).float()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=spec["lr"])

        def unit(v):  # fewjax.kernels._episodic.normalize
            return v / torch.sqrt((v * v).sum(-1, keepdim=True) + 1e-8)

        def call():
            opt.zero_grad(set_to_none=True)
            z = embed(ids, mask)
            z_s, z_q = z[:n_s], z[n_s:]
            protos = (onehot.T @ z_s) / onehot.sum(0).clamp(min=1.0)[:, None]
            logits = unit(z_q) @ unit(protos).T / spec["temperature"]
            loss = F.cross_entropy(logits, query_y)
            loss.backward()
            if spec["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(params, spec["grad_clip"])
            opt.step()
            return loss.detach()

    times = []
    for i in range(spec["warmup"] + spec["reps"]):
        t0 = time.perf_counter()
        out = call()
        if spec["case"] == "protonet_step":
            value = float(out)  # waits for the step, as fewjax's timing waits for its loss
        t = time.perf_counter() - t0
        if i == 0:
            first_out = out
            if spec["case"] == "protonet_step":
                first_loss = value
        if i >= spec["warmup"]:
            times.append(t)
    if spec["embeddings_out"] and spec["case"] == "forward":
        np.savez(spec["embeddings_out"], embeddings=first_out.numpy())
    med = statistics.median(times)
    rec = dict(impl="pytorch", case=spec["case"], batch=spec["batch"], length=spec["length"],
               seconds_per_call=round(med, 5), sentences_per_s=round(spec["batch"] / med, 2),
               times=[round(t, 5) for t in times], reps=spec["reps"], warmup=spec["warmup"],
               first_loss=first_loss, threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
               attn_implementation=getattr(model.config, "_attn_implementation", None), model_load_s=round(load_s, 2),
               versions=dict(torch=torch.__version__, transformers=transformers.__version__, numpy=np.__version__,
                             python=platform.python_version()),
               optimizer=(f"Adam(lr={spec['lr']}), clip_grad_norm_({spec['grad_clip']}), cosine / "
                          f"{spec['temperature']}" if spec["case"] == "protonet_step" else None),
               load_before=load_before, load_after=load_average())
    print(json.dumps(rec), flush=True)
    return rec


if __name__ == "__main__":
    main()
