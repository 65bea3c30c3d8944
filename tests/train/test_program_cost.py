"""program_cost counts what XLA counts, and counts loop bodies as often as they run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewjax.train.program_cost import compiled_cost, program_cost


def conv_net_loss(w, x):
    """Two convolutions (the second grouped), so the gradient has dilated and grouped convolutions."""
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.lax.conv_general_dilated(x, w["a"], (1, 1), "SAME", dimension_numbers=dn)
    h = jax.lax.conv_general_dilated(jnp.tanh(h), w["b"], (2, 2), "SAME", dimension_numbers=dn,
                                     feature_group_count=2)
    return jnp.mean(h ** 2)


def weights():
    return {"a": jnp.ones((3, 3, 2, 4)) * 0.1, "b": jnp.ones((3, 3, 2, 4)) * 0.1}


def test_a_loop_free_program_costs_what_xla_counts():
    x = jnp.ones((6, 10, 10, 2))
    per_example = jax.jit(jax.vmap(jax.grad(conv_net_loss), in_axes=(None, 0)))
    cost = compiled_cost(per_example.lower(weights(), x[:, None]).compile())
    assert cost["unknown_trip_counts"] == 0
    np.testing.assert_allclose(cost["flops"], cost["xla_flops_loop_bodies_once"], rtol=0.02)


def test_a_scan_counts_its_body_once_per_trip():
    x = jnp.ones((6, 1, 10, 10, 2))

    def scanned(w, xs):
        return jax.lax.scan(lambda acc, xi: (acc + jax.grad(conv_net_loss)(w, xi)["a"], None), w["a"] * 0, xs)[0]

    def vmapped(w, xs):
        return jnp.sum(jax.vmap(lambda xi: jax.grad(conv_net_loss)(w, xi)["a"])(xs), axis=0)

    loop = compiled_cost(jax.jit(scanned).lower(weights(), x).compile())
    flat = compiled_cost(jax.jit(vmapped).lower(weights(), x).compile())
    assert loop["xla_flops_loop_bodies_once"] < 0.5 * flat["xla_flops_loop_bodies_once"]  # XLA: the body once
    np.testing.assert_allclose(loop["flops"], flat["flops"], rtol=0.1)


HLO = """HloModule m, entry_computation_layout={(f32[4,8]{1,0})->f32[4,8]{1,0}}

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

%body (p: (s32[], f32[4,8])) -> (s32[], f32[4,8]) {
  %p = (s32[], f32[4,8]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %x = f32[4,8]{1,0} get-tuple-element(%p), index=1
  %g = f32[32,8]{1,0} all-gather(%x), channel_id=1, replica_groups=[1,8]<=[8], dimensions={0}
  %r = f32[4,8]{1,0} all-reduce(%x), channel_id=2, replica_groups=[1,8]<=[8], to_apply=%add
  %m = f32[4,8]{1,0} multiply(%r, %x)
  ROOT %t = (s32[], f32[4,8]{1,0}) tuple(%i, %m)
}

%cond (q: (s32[], f32[4,8])) -> pred[] {
  %q = (s32[], f32[4,8]{1,0}) parameter(0)
  %j = s32[] get-tuple-element(%q), index=0
  %n = s32[] constant(3)
  ROOT %lt = pred[] compare(%j, %n), direction=LT
}

ENTRY %main (arg: f32[4,8]) -> f32[4,8] {
  %arg = f32[4,8]{1,0} parameter(0)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4,8]{1,0}) tuple(%zero, %arg)
  %w = (s32[], f32[4,8]{1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  ROOT %out = f32[4,8]{1,0} get-tuple-element(%w), index=1
}
"""


def test_collectives_in_a_loop_count_once_per_trip():
    cost = program_cost(HLO)
    assert cost.collectives == {"all-gather": [3, 3 * 32 * 8 * 4], "all-reduce": [3, 3 * 4 * 8 * 4]}
    assert cost.collective_bytes == 3 * (32 * 8 + 4 * 8) * 4
    assert cost.largest_collective == 32 * 8 * 4
    assert cost.flops == 3 * 32 + 4 * 1  # the multiply per trip; the condition's compare per test (4)
    assert cost.unknown_trip_counts == 0


def test_a_loop_without_a_known_trip_count_is_flagged():
    cost = program_cost(HLO.replace(', backend_config={"known_trip_count":{"n":"3"}}', ""))
    assert cost.unknown_trip_counts == 1 and cost.collectives["all-reduce"][0] == 1


def test_library_calls_are_counted_apart_from_flops():
    """A GPU program's cuDNN convolutions are custom-calls without an HLO body: flagged, not priced."""
    hlo = """HloModule m
ENTRY %main (x: f32[8,28,28,1], w: f32[3,3,1,64]) -> f32[8,28,28,64] {
  %x = f32[8,28,28,1]{3,2,1,0} parameter(0)
  %w = f32[3,3,1,64]{3,2,1,0} parameter(1)
  %conv = (f32[8,28,28,64]{3,2,1,0}, u8[0]{0}) custom-call(%x, %w), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f, custom_call_target="__cudnn$convForward"
  %out = f32[8,28,28,64]{3,2,1,0} get-tuple-element(%conv), index=0
  ROOT %y = f32[8,28,28,64]{3,2,1,0} add(%out, %out)
}
"""
    cost = program_cost(hlo)
    assert cost.library_calls == 1 and cost.flops == 8 * 28 * 28 * 64
    assert program_cost(hlo.replace("__cudnn$convForward", "Sharding")).library_calls == 0


def test_text_without_an_entry_is_a_clear_error():
    with pytest.raises(ValueError, match="no ENTRY computation"):
        program_cost("HloModule m\n")
