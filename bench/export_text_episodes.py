"""Export the seeded text test episodes fewjax evaluates, as raw strings, for a library peer (issue 17).

Run:   PYTHONPATH=. /work/venv/bin/python bench/export_text_episodes.py --preset clinc150_5w1s \
           [--episodes 600] [--test_queries 15] [--out bench/results/episodes/clinc150_5w1s.jsonl] [--no_verify]

Writes one JSON line per episode, in evaluation order:
    {"episode": i, "preset": ..., "seed": TEST_SEED, "classes": [class name of label 0, ...],
     "support": [[text, label], ...], "query": [[text, label], ...]}
(class-major, as the sampler lays out a task: `ways * test_shots` support and `ways * test_queries` query rows).

These are exactly the episodes `train.py` / `evaluate.py` score a text run on: `fewjax.train.loop.final_test`
draws `make_sampler(config, "test", seed=TEST_SEED).eval_batches(test_episodes, seed=TEST_SEED, ...)`, i.e.
episode i is `eval_set(n, seed=TEST_SEED)[i]`, a function of the class split's labels, their counts and the seed
only (`fewjax.data.episodes`). So the same sampler built on a source whose examples are the row indices of the
split's texts (`fewjax.text.sources.clinc150_texts` / `fewrel_texts`, the lists the token-id source is built from,
in the same order) draws the same rows; the strings are then looked up by index, not decoded. The text is what
fewjax hands the tokenizer (FewRel: the words joined by spaces with the `[E1] .. [/E1]`, `[E2] .. [/E2]` markers
as plain text). fewjax cuts the token ids at `text.max_length` (32 for CLINC150, where 1 utterance in 22,500 is
longer; 64 for FewRel, 3% longer); the exported text is the whole string.

Unless --no_verify, the export is checked against the real sampler: every exported text, tokenised as fewjax does,
must give exactly the token ids of the real episode, and the labels must match.

The config is configs/text_setfit.py's preset with `text.model` and `data_dir` pointed at the shared folders
(`$FEWJAX_SHARED`, else ../shared beside the checkout; or --model / --data_dir). The episodes are the same for
every configs/text_*.py with the same preset (they depend on the dataset, ways, shots, queries and class seed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fewjax.data import ArraySource, episodes  # noqa: E402
from fewjax.eval.evaluate import TEST_SEED  # noqa: E402
from fewjax.text import sources as ts  # noqa: E402
from fewjax.text.datasets import _text_dir  # noqa: E402
from bench.reproduce import preset_config  # noqa: E402

SHARED = Path(os.environ.get("FEWJAX_SHARED") or ROOT / ".." / "shared")
PRESETS = ("clinc150_5w1s", "clinc150_5w5s", "fewrel_5w1s", "fewrel_5w5s")


def load_config(preset: str, *, model: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                test_queries: int | None = None):
    """configs/text_setfit.py:`preset` with the shared model and data folders (and `test_queries` if given)."""
    c = preset_config("text_setfit", preset)
    c.text.model = str(model or SHARED / "models" / "all-MiniLM-L6-v2")
    c.data_dir = str(data_dir or SHARED / "data")
    if test_queries is not None:
        c.test_queries = int(test_queries)
    return c


def split_texts(config, split: str = "test") -> tuple[list[str], np.ndarray, list[str]]:
    """`(texts, labels, class_names)` of `split` in the order `fewjax.text.datasets.make_text_source` tokenises them
    (the same data folder, class seed and default class sizes; FewRel's val split reads the training relations)."""
    data_dir, seed = _text_dir(config), int(config.text.class_seed)
    if config.dataset == "clinc150":
        return ts.clinc150_texts(split, data_dir=data_dir, seed=seed)
    if config.dataset == "fewrel":
        return ts.fewrel_texts("train" if split == "val" else split, data_dir=data_dir, seed=seed)
    raise ValueError(f"config.dataset={config.dataset!r}: only clinc150 and fewrel are exported.")


def index_sampler(config, labels: np.ndarray, class_names, *, seed: int = TEST_SEED):
    """The test sampler of `make_sampler(config, "test", seed=seed)` over row indices instead of token ids."""
    source = ArraySource(np.arange(len(labels), dtype=np.int64), labels, class_names)
    return episodes(source, ways=config.test_ways, shots=config.test_shots, queries=config.test_queries, seed=seed)


def export_episodes(config, num_episodes: int, *, seed: int = TEST_SEED, preset: str | None = None) -> list[dict]:
    """The first `num_episodes` test episodes fewjax evaluates `config` on, as dicts of raw strings and labels."""
    texts, labels, names = split_texts(config, "test")
    tasks = index_sampler(config, labels, names, seed=seed).eval_set(num_episodes, seed=seed)
    shots = config.test_shots
    out = []
    for i in range(num_episodes):
        rows = {part: [[texts[int(j)], int(y)] for j, y in zip(getattr(tasks, part).x[i], getattr(tasks, part).y[i])]
                for part in ("support", "query")}
        # class-major layout: support row k * shots has label k
        classes = [names[int(labels[int(tasks.support.x[i, k * shots])])] for k in range(config.test_ways)]
        out.append({"episode": i, "preset": preset, "seed": int(seed),
                    "classes": classes, "support": rows["support"], "query": rows["query"]})
    return out


def verify(config, exported: list[dict], *, seed: int = TEST_SEED) -> None:
    """Raises AssertionError unless every exported text re-tokenises (as fewjax does: the run's tokenizer and
    `text.max_length`) to the token ids of the real test episode, with the same labels."""
    from fewjax.experiment.data import make_sampler
    from fewjax.text.encoder import load_pretrained_cached

    tok = load_pretrained_cached(str(config.text.model))[2]
    real = make_sampler(config, "test", seed=seed).eval_set(len(exported), seed=seed)
    for i, ep in enumerate(exported):
        for part in ("support", "query"):
            batch = getattr(real, part)
            strings = [t for t, _ in ep[part]]
            ids = tok(strings, max_length=batch.x.shape[-1])
            if ids.shape != batch.x[i].shape or not np.array_equal(ids, batch.x[i]):
                raise AssertionError(f"episode {i} {part}: exported texts do not re-tokenise to the sampler's ids")
            if [y for _, y in ep[part]] != batch.y[i].tolist():
                raise AssertionError(f"episode {i} {part}: labels differ from the sampler's")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", required=True, choices=PRESETS)
    p.add_argument("--episodes", type=int, default=600, help="the first N test episodes (fewjax evaluates 600)")
    p.add_argument("--test_queries", type=int, default=None, help="queries per class (the preset's: 15)")
    p.add_argument("--out", default=None, help="default bench/results/episodes/<preset>.jsonl")
    p.add_argument("--model", default=None, help="tokenizer/model folder (default <shared>/models/all-MiniLM-L6-v2)")
    p.add_argument("--data_dir", default=None, help="data folder (default <shared>/data)")
    p.add_argument("--no_verify", action="store_true", help="skip the re-tokenisation check against the sampler")
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error("--episodes must be >= 1")
    if a.test_queries is not None and a.test_queries < 1:
        p.error("--test_queries must be >= 1")
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    config = load_config(a.preset, model=a.model, data_dir=a.data_dir, test_queries=a.test_queries)
    exported = export_episodes(config, a.episodes, preset=a.preset)
    if not a.no_verify:
        verify(config, exported)
    out = Path(a.out or ROOT / "bench" / "results" / "episodes" / f"{a.preset}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for ep in exported:
            f.write(json.dumps(ep, ensure_ascii=False) + "\n")
    tmp.replace(out)
    print(json.dumps({"out": str(out), "preset": a.preset, "episodes": len(exported), "seed": TEST_SEED,
                      "ways": config.test_ways, "shots": config.test_shots, "queries": config.test_queries,
                      "verified": not a.no_verify, "bytes": out.stat().st_size}))


if __name__ == "__main__":
    main()
