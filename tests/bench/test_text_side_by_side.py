"""bench/text_side_by_side.py and bench/peers_text/encoder_peer.py: arguments, the peer's spec, the records and the
table (no torch, no model: seconds)."""
import io
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "peers_text"))

from bench import text_side_by_side as sbs  # noqa: E402
import encoder_peer  # noqa: E402


def _rec(impl, case, length, sps, ratio, load, run="2026-12-02T01:00:00", **kw):
    return dict(impl=impl, case=case, length=length, batch=64, sentences_per_s=sps, seconds_per_call=64 / sps,
                ratio=ratio, load_before=load, load_after=load + 0.5, run=run, rounds=2, commit="abc1234",
                versions={"jax": "0.10.2"}, peer_versions={"torch": "2.13.0+cpu", "transformers": "5.24.0"},
                peer_threads=2, round_ratios=[1.3, 1.5], **kw)


def test_table_shows_the_latest_run_in_case_then_length_order(tmp_path):
    path = tmp_path / "sbs.jsonl"
    rows = [_rec("fewjax", "forward", 32, 10.0, 0.5, 7.0, run="old"), _rec("pytorch", "forward", 32, 20.0, 0.5, 7.0,
                                                                           run="old"),
            _rec("fewjax", "protonet_step", 32, 8.4, 1.75, 8.0), _rec("pytorch", "protonet_step", 32, 4.8, 1.75, 8.2),
            _rec("fewjax", "forward", 64, 17.0, 1.21, 6.1), _rec("pytorch", "forward", 64, 14.0, 1.21, 6.0),
            _rec("fewjax", "forward", 32, 33.7, 1.41, 8.5), _rec("pytorch", "forward", 32, 24.0, 1.41, 8.7)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = sbs.table(path).splitlines()
    assert lines[0].startswith("| case | length | fewjax sentences/s | PyTorch sentences/s | fewjax / PyTorch |")
    assert lines[2] == "| forward | 32 | 33.7 | 24.0 | **1.41x** | 1.30, 1.50 | 8.5-9.2 | - | - | - |"  # latest run
    assert lines[3] == "| forward | 64 | 17.0 | 14.0 | **1.21x** | 1.30, 1.50 | 6.0-6.6 | - | - | - |"
    assert lines[4] == "| protonet_step | 32 | 8.4 | 4.8 | **1.75x** | 1.30, 1.50 | 8.0-8.7 | - | - | - |"
    assert "2 alternating rounds" in lines[-1] and "PyTorch 2.13.0+cpu" in lines[-1] and "abc1234" in lines[-1]
    assert "no bench/results" in sbs.table(tmp_path / "missing.jsonl")


def test_flops_and_fraction_of_the_peak_appear_when_recorded(tmp_path):
    path = tmp_path / "sbs.jsonl"
    rows = [dict(_rec("fewjax", "forward", 32, 200.0, 1.25, 1.6), gflop_per_call=45.0, percent_of_gemm_peak=83.0,
                 gemm_peak_gflops=180.0),
            dict(_rec("pytorch", "forward", 32, 160.0, 1.25, 1.6), gflop_per_call=45.0, percent_of_gemm_peak=66.4,
                 gemm_peak_gflops=180.0)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = sbs.table(path).splitlines()
    assert lines[2].endswith("| 45.0 | 83.0 | 66.4 |") and "180.0 GFLOP/s" in lines[-1]
    assert sbs.percent_of_peak(45.0, 0.3, 180.0) == round(100 * 150 / 180, 1)
    assert sbs.percent_of_peak(None, 0.3, 180.0) is None and sbs.percent_of_peak(45.0, 0.3, None) is None


def test_xla_gflop_counts_a_matrix_product():
    import jax
    import jax.numpy as jnp

    x = jnp.ones((64, 128))
    compiled = jax.jit(lambda a, b: a @ b).lower(x, x.T).compile()
    assert sbs.xla_gflop(compiled) == round(2 * 64 * 128 * 64 / 1e9, 3)


def test_combine_pools_the_rounds_and_gives_both_lines_one_ratio():
    blocks = {"fewjax": [dict(times=[1.0, 3.0, 2.0], load_before=[7.0], load_after=[7.5]),
                         dict(times=[2.0, 2.0, 2.0], load_before=[7.5], load_after=[8.0])],
              "pytorch": [dict(times=[4.0, 4.0, 4.0], load_before=[7.5], load_after=[7.6]),
                          dict(times=[3.0, 3.0, 3.0], load_before=[8.0], load_after=[8.5])]}
    f, p = sbs.combine("forward", 32, blocks, batch=64, extra={"run": "x"})
    assert (f["impl"], p["impl"]) == ("fewjax", "pytorch")
    assert f["seconds_per_call"] == 2.0 and p["seconds_per_call"] == 3.5
    assert f["ratio"] == p["ratio"] == 1.75 and f["sentences_per_s"] == 32.0
    assert f["round_ratios"] == [2.0, 1.5]
    assert (f["load_before"], f["load_after"], p["load_after"]) == (7.0, 8.0, 8.5) and f["run"] == "x"


def test_driver_arguments():
    a = sbs.parse_args([])
    assert (a.batch, a.lengths, a.cases, a.rounds) == (64, [32, 64], ["forward", "protonet_step"], 2)
    a = sbs.parse_args(["--lengths", "64", "--cases", "protonet_step", "--rounds", "3", "--step_reps", "2"])
    assert (a.lengths, a.cases, a.rounds, a.step_reps) == ([64], ["protonet_step"], 3, 2)
    for bad in (["--cases", "backward"], ["--lengths", "32,x"], ["--lengths", "0"], ["--rounds", "0"],
                ["--warmup", "-1"], ["--batch", "5"]):
        with pytest.raises(SystemExit):
            sbs.parse_args(bad)
    assert sbs.preset_for(32) == "clinc150_5w1s" and sbs.preset_for(64) == "fewrel_5w1s"
    assert sbs.preset_for(128) == "fewrel_5w1s" and sbs.preset_for(16) == "clinc150_5w1s"


def test_the_driver_spec_is_what_the_peer_accepts():
    a = sbs.parse_args(["--forward_reps", "7", "--step_reps", "2", "--warmup", "0"])
    for case, reps in (("forward", 7), ("protonet_step", 2)):
        spec = sbs.peer_spec(a, case=case, length=64, ids_path="/tmp/x.npz")
        parsed = encoder_peer.parse_spec([json.dumps(spec)])
        assert (parsed["case"], parsed["reps"], parsed["warmup"], parsed["length"], parsed["batch"]) == (
            case, reps, 0, 64, 64)
        assert parsed["threads"] == 2 and parsed["lr"] == 2e-5 and parsed["temperature"] == 0.1


def test_peer_spec_from_stdin_defaults_and_errors():
    spec = encoder_peer.parse_spec(["-"], stdin=io.StringIO('{"ids": "a.npz", "case": "protonet_step"}'))
    assert (spec["batch"], spec["length"], spec["threads"], spec["grad_clip"]) == (64, 32, 2, 1.0)
    assert encoder_peer.parse_spec([], stdin=io.StringIO('{"ids": "a.npz"}'))["case"] == "forward"
    for bad in ('{"ids": "a.npz", "case": "backward"}', '{"ids": "a.npz", "reps": 0}', '{"case": "forward"}',
                '{"ids": "a.npz", "warmup": -1}', '{"ids": "a.npz", "bogus": 1}', '[1, 2]'):
        with pytest.raises(ValueError):
            encoder_peer.parse_spec([bad])
