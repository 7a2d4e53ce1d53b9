#!/usr/bin/env python3
"""Writes the seed corpus of the reference-case fuzz target (fuzz/corpus/refcheck/).

Tiny reference cases in the format of docs/reference_format.md, each well under 20 KB: valid in
format, names and shapes, so the runner goes through config parsing, weight loading and the run;
their expected outputs are zeros, so they FAIL the tolerance (the fuzzer needs the path, not the
numbers). Then malformed cases: configs with non-integral, negative or huge integer fields, a
zero extent, a huge batch, metadata that is not what the runner expects. Deterministic: running it
again gives the same bytes. Usage: python3 fuzz/make_refcheck_corpus.py [OUT_DIR]
"""
import json
import os
import random
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "refcheck")
rng = random.Random(15)


def case(layer, level, config, tensors, tolerance=None, extra_meta=None):
    """safetensors bytes: tensors is [(name, shape, dtype)] with small random F32 data."""
    header, data = {}, b""
    for name, shape, *dt in tensors:
        dtype = dt[0] if dt else "F32"
        n = 1
        for e in shape:
            n *= e
        if name.startswith(("out.", "state_out.")):
            raw = struct.pack("<%df" % n, *([0.0] * n))
        else:
            raw = struct.pack("<%df" % n, *[rng.uniform(-0.5, 0.5) for _ in range(n)])
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    meta = {"seqmix.layer": layer, "seqmix.level": level, "seqmix.config": json.dumps(config),
            "seqmix.tolerance": json.dumps(tolerance or {"atol": 1e-5, "rtol": 1e-5})}
    meta.update(extra_meta or {})
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


B, T, H, K, V = 1, 3, 2, 4, 4
files = {}
# Op level, one per layer.
files["valid_gla_op"] = case("gla", "op", {"scale": 0.5}, [
    ("in.q", (B, T, H, K)), ("in.k", (B, T, H, K)), ("in.v", (B, T, H, V)), ("in.gk", (B, T, H, K)),
    ("out.o", (B, T, H, V)), ("state_out.h", (B, H, K, V))])
files["valid_delta_net_op"] = case("delta_net", "op", {"scale": 0.5, "l2norm_inside_op": False}, [
    ("in.q", (B, T, H, K)), ("in.k", (B, T, H, K)), ("in.v", (B, T, H, V)), ("in.beta", (B, T, H)),
    ("state_in.h", (B, H, K, V)), ("out.o", (B, T, H, V)), ("state_out.h", (B, H, K, V))])
files["valid_gated_delta_net_op"] = case("gated_delta_net", "op", {"scale": 0.5}, [
    ("in.q", (B, T, H, K)), ("in.k", (B, T, H, K)), ("in.v", (B, T, H, V)), ("in.g", (B, T, H)),
    ("in.beta", (B, T, H)), ("out.o", (B, T, H, V)), ("state_out.h", (B, H, K, V))])
files["valid_rwkv7_op"] = case("rwkv7", "op", {"scale": 1.0}, [
    ("in.r", (B, T, H, K)), ("in.w", (B, T, H, K)), ("in.k", (B, T, H, K)), ("in.v", (B, T, H, V)),
    ("in.a", (B, T, H, K)), ("in.b", (B, T, H, K)), ("out.o", (B, T, H, V)), ("state_out.h", (B, H, K, V))])
D, N = 4, 2
files["valid_mamba_op"] = case("mamba", "op", {"delta_softplus": True}, [
    ("in.u", (B, T, D)), ("in.delta", (B, T, D)), ("in.A", (D, N)), ("in.B", (B, T, N)), ("in.C", (B, T, N)),
    ("in.D", (D,)), ("in.z", (B, T, D)), ("in.delta_bias", (D,)), ("out.y", (B, T, D)), ("state_out.h", (B, D, N))])
P = 2
files["valid_mamba2_op"] = case("mamba2", "op", {"dt_softplus": True, "dt_limit": [0.0, None]}, [
    ("in.x", (B, T, H, P)), ("in.B", (B, T, 1, N)), ("in.C", (B, T, 1, N)), ("in.dt", (B, T, H)), ("in.A", (H,)),
    ("in.D", (H,)), ("in.dt_bias", (H,)), ("out.y", (B, T, H, P)), ("state_out.h", (B, H, P, N))])
files["valid_attention_op"] = case("attention", "op", {"scale": 0.5, "window": 2}, [
    ("in.q", (B, T, H, K)), ("in.k", (B, T, 1, K)), ("in.v", (B, T, 1, V)), ("state_in.k", (B, 2, 1, K)),
    ("state_in.v", (B, 2, 1, V)), ("out.o", (B, T, H, V)), ("state_out.k", (B, 5, 1, K)), ("state_out.v", (B, 5, 1, V))])
files["valid_diff_attn_op"] = case("diff_attn", "op", {"scale": 0.5, "lambda_init": 0.2, "subln_eps": 1e-5}, [
    ("in.q", (B, T, 2 * H, K)), ("in.k", (B, T, 2, K)), ("in.v", (B, T, 1, 2 * V)),
    ("param.lambda_q1", (K,)), ("param.lambda_k1", (K,)), ("param.lambda_q2", (K,)), ("param.lambda_k2", (K,)),
    ("param.subln.weight", (2 * V,)), ("out.o", (B, T, H, 2 * V))])
# Layer level: GLA and Mamba with their upstream weight names.
C = 8
gla_cfg = {"hidden_size": C, "num_heads": 2, "expand_k": 0.5, "expand_v": 1.0, "gate_low_rank_dim": 2,
           "gate_logit_normalizer": 16, "norm_eps": 1e-5}
kd, vd, r = C // 2, C, 2
files["valid_gla_layer"] = case("gla", "layer", gla_cfg, [
    ("in.x", (B, T, C)), ("param.q_proj.weight", (kd, C)), ("param.k_proj.weight", (kd, C)),
    ("param.v_proj.weight", (vd, C)), ("param.g_proj.weight", (vd, C)), ("param.gk_proj.0.weight", (r, C)),
    ("param.gk_proj.1.weight", (kd, r)), ("param.gk_proj.1.bias", (kd,)), ("param.g_norm_swish_gate.weight", (vd // 2,)),
    ("param.o_proj.weight", (C, vd)), ("out.y", (B, T, C)), ("state_out.h", (B, 2, kd // 2, vd // 2))])
mamba_cfg = {"d_model": C, "d_state": 2, "d_conv": 2, "expand": 1, "dt_rank": 1, "conv_bias": True, "bias": False}
di = C
files["valid_mamba_layer"] = case("mamba", "layer", mamba_cfg, [
    ("in.x", (B, T, C)), ("param.in_proj.weight", (2 * di, C)), ("param.conv1d.weight", (di, 1, 2)),
    ("param.conv1d.bias", (di,)), ("param.x_proj.weight", (1 + 4, di)), ("param.dt_proj.weight", (di, 1)),
    ("param.dt_proj.bias", (di,)), ("param.A_log", (di, 2)), ("param.D", (di,)), ("param.out_proj.weight", (C, di)),
    ("out.y", (B, T, C)), ("state_out.conv", (B, di, 1)), ("state_out.ssm", (B, di, 2))])


def with_config(name, **changes):
    """A copy of case `name` with its config changed (the tensors stay)."""
    raw = files[name]
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    cfg = json.loads(header["__metadata__"]["seqmix.config"])
    cfg.update(changes)
    header["__metadata__"]["seqmix.config"] = json.dumps(cfg)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + raw[8 + n:]


# Malformed: integer fields that are not integers, negative or huge; mistyped flags; bad limits.
files["bad_num_heads_frac"] = with_config("valid_gla_layer", num_heads=2.5)
files["bad_num_heads_huge"] = with_config("valid_gla_layer", num_heads=1e30)
files["bad_num_heads_negative"] = with_config("valid_gla_layer", num_heads=-2)
files["bad_hidden_size_i64"] = with_config("valid_gla_layer", hidden_size=9223372036854775807)
files["bad_expand_k_huge"] = with_config("valid_gla_layer", expand_k=1e300)
files["bad_d_state_string"] = with_config("valid_mamba_layer", d_state="16")
files["bad_expand_overflow"] = with_config("valid_mamba_layer", expand=4611686018427387904)
files["bad_window_negative"] = with_config("valid_attention_op", window=-1)
files["bad_dt_limit"] = with_config("valid_mamba2_op", dt_limit=[1.0])
files["bad_softplus_number"] = with_config("valid_mamba_op", delta_softplus=1)
files["bad_config_array"] = case("gla", "op", [1, 2], [("in.q", (1, 1, 1, 1))])
files["bad_tolerance"] = case("gla", "op", {"scale": 1}, [("in.q", (1, 1, 1, 1))], tolerance={"atol": "x"})
# Shapes: a zero extent, a huge batch of nothing, mismatched inputs, a wrong-rank prefix.
files["bad_zero_extent"] = case("gla", "op", {"scale": 0.5}, [
    ("in.q", (1 << 40, 1 << 20, 2, 0)), ("in.k", (1, T, H, K)), ("in.v", (1, T, H, V)), ("in.gk", (1, T, H, K))])
files["bad_mismatch"] = case("gla", "op", {"scale": 0.5}, [
    ("in.q", (B, T, H, K)), ("in.k", (B, T + 1, H, K)), ("in.v", (B, T, H, V)), ("in.gk", (B, T, H, K))])
files["bad_prefix_rank"] = case("attention", "op", {"scale": 0.5, "window": None}, [
    ("in.q", (B, T, H, K)), ("in.k", (B, T, 1, K)), ("in.v", (B, T, 1, V)), ("state_in.k", (2,)), ("state_in.v", (2,))])
files["bad_missing_layer"] = case("gla", "op", {"scale": 0.5}, [("in.q", (1, 1, 1, 1))])
files["bad_unknown_layer"] = case("hyena", "layer", {}, [("in.x", (1, 1, 1))])
files["bad_unknown_level"] = case("mamba", "model", {}, [("in.x", (1, 1, 1))])

os.makedirs(out, exist_ok=True)
for name, raw in sorted(files.items()):
    assert len(raw) < 20000, name
    with open(os.path.join(out, name), "wb") as f:
        f.write(raw)
print("wrote %d cases to %s" % (len(files), out))
