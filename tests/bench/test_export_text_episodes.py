"""bench/export_text_episodes.py: the exported strings are exactly the test episodes fewjax evaluates (issue 17)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import export_text_episodes as ex  # noqa: E402
from fewjax.eval.evaluate import TEST_SEED  # noqa: E402
from fewjax.experiment.data import make_sampler  # noqa: E402
from fewjax.text import Tokenizer  # noqa: E402
from tests.shared import SHARED  # noqa: E402

MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
DATA = SHARED / "data"
EPISODES = 4

pytestmark = pytest.mark.skipif(not (MODEL / "tokenizer.json").is_file() or not (DATA / "text").is_dir(),
                                reason="shared model / text data not available")


def config(preset, **kw):
    return ex.load_config(preset, model=MODEL, data_dir=DATA, **kw)


@pytest.mark.parametrize("preset", ["clinc150_5w1s", "fewrel_5w5s"])
def test_exported_texts_retokenize_to_the_test_episodes(preset):
    c = config(preset)
    exported = ex.export_episodes(c, EPISODES, preset=preset)
    real = make_sampler(c, "test", seed=TEST_SEED).eval_set(EPISODES, seed=TEST_SEED)
    tok = Tokenizer.from_file(MODEL)
    assert [e["episode"] for e in exported] == list(range(EPISODES))
    for i, ep in enumerate(exported):
        assert len(ep["support"]) == c.test_ways * c.test_shots
        assert len(ep["query"]) == c.test_ways * c.test_queries == 5 * 15
        assert len(set(ep["classes"])) == c.test_ways
        for part in ("support", "query"):
            batch = getattr(real, part)
            ids = tok([t for t, _ in ep[part]], max_length=c.text.max_length)
            assert (ids == batch.x[i]).all()
            assert [y for _, y in ep[part]] == batch.y[i].tolist()
    if preset.startswith("fewrel"):
        assert all("[E1]" in t and "[/E2]" in t for t, _ in exported[0]["query"])  # markers as fewjax feeds them
    ex.verify(c, exported)


def test_verify_rejects_a_changed_text_or_label():
    c = config("clinc150_5w1s", test_queries=2)
    exported = ex.export_episodes(c, 2)
    assert len(exported[1]["query"]) == 5 * 2
    bad = json.loads(json.dumps(exported))
    bad[1]["query"][3][0] = bad[1]["query"][3][0] + " please"
    with pytest.raises(AssertionError, match="episode 1 query"):
        ex.verify(c, bad)
    bad = json.loads(json.dumps(exported))
    bad[0]["support"][0][1] = 4
    with pytest.raises(AssertionError, match="labels"):
        ex.verify(c, bad)


def test_cli_writes_one_line_per_episode(tmp_path, capsys):
    out = tmp_path / "eps.jsonl"
    ex.main(["--preset", "clinc150_5w5s", "--episodes", "3", "--test_queries", "2", "--out", str(out),
             "--model", str(MODEL), "--data_dir", str(DATA)])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(e["support"]) for e in lines] == [25] * 3 and [len(e["query"]) for e in lines] == [10] * 3
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["verified"] is True


def test_cli_rejects_unknown_preset():
    with pytest.raises(SystemExit):
        ex.parse_args(["--preset", "omniglot_5w1s"])


def test_fewer_queries_are_the_first_queries_of_each_class():
    full = ex.export_episodes(config("clinc150_5w1s"), 2)
    few = ex.export_episodes(config("clinc150_5w1s", test_queries=5), 2)
    for a, b in zip(full, few):
        assert a["support"] == b["support"] and a["classes"] == b["classes"]
        assert b["query"] == [row for k in range(5) for row in a["query"][15 * k: 15 * k + 5]]


def test_peer_summary_matches_fewjax_and_reads_the_export(tmp_path):
    from bench.peers_text import setfit_peer  # no torch at import time

    s = setfit_peer.summarize([0.8, 1.0, 0.9, 0.7])
    assert s["episodes"] == 4 and abs(s["accuracy"] - 0.85) < 1e-12
    assert abs(s["ci95"] - 1.96 * 0.12909944487358055 / 2) < 1e-12  # sample std, as fewjax.eval.evaluate
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(json.dumps({"support": [["a", 0]], "query": [["b", 0]], "episode": i})
                              for i in range(5)) + "\n")
    assert [e["episode"] for e in setfit_peer.read_episodes(path, limit=3)] == [0, 1, 2]
    a = setfit_peer.parse_args(["--episodes_file", str(path)])
    assert (a.num_iterations, a.batch_size, a.num_epochs, a.body_lr, a.seed, a.threads) == (20, 16, 1, 2e-5, 42, 2)
