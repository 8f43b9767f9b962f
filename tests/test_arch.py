
import pytest
import torch
from safetensors.torch import save_file

from provenance.arch import FAMILIES, FUSED, GLOBAL_ROLES, LAYER_ROLES, detect_family, map_names
from provenance.model import inspect_model, open_model


def _example_name(pattern: str) -> str:
    return "model." + pattern.replace("{L}", "0").replace("{E}", "1")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_row_maps_to_a_known_role(family):
    for pattern, target in family.rows.items():
        role = target if isinstance(target, str) else target[0]
        assert role in LAYER_ROLES or role in GLOBAL_ROLES, (family.name, pattern, role)
        ref = map_names(family, [_example_name(pattern)])[_example_name(pattern)]
        assert ref.role == role
        assert (ref.layer == 0) == ("{L}" in pattern) and (ref.expert == 1) == ("{E}" in pattern)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_is_detected_from_its_own_names(family):
    names = [_example_name(p) for p in family.rows]
    detected, roles = detect_family(names, {"model_type": family.model_types[0]})
    assert detected.name == family.name and len(roles) == len(names)
    present = {r.role for r in roles.values()}
    assert all(m in present for m in family.markers)


def test_fused_roles_exist_in_the_vocabulary():
    for fused, parts in FUSED.items():
        assert fused in LAYER_ROLES and all(p in LAYER_ROLES for p in parts)


def _save(directory, state):
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, directory / "model.safetensors")
    return directory


def test_name_only_detection_distinguishes_moe_families(tmp_path):
    h, e = 8, 2
    common = {"model.embed_tokens.weight": torch.randn(10, h), "model.layers.0.self_attn.q_proj.weight": torch.randn(h, h),
              "model.layers.0.self_attn.o_proj.bias": torch.randn(h), "model.layers.0.mlp.gate.weight": torch.randn(e, h)}
    experts = {f"model.layers.0.mlp.experts.{i}.up_proj.weight": torch.randn(4, h) for i in range(e)}
    pangu = {**common, **experts, "model.layers.0.mlp.router_scale": torch.randn(1, e)}
    assert inspect_model(_save(tmp_path / "p", pangu))["family"] == "pangu_moe"
    assert inspect_model(_save(tmp_path / "q", {**common, **experts}))["family"] == "qwen2_moe"
    mixtral = {"model.embed_tokens.weight": torch.randn(10, h), "model.layers.0.self_attn.q_proj.weight": torch.randn(h, h),
               "model.layers.0.block_sparse_moe.gate.weight": torch.randn(e, h),
               **{f"model.layers.0.block_sparse_moe.experts.{i}.w3.weight": torch.randn(4, h) for i in range(e)}}
    info = inspect_model(_save(tmp_path / "m", mixtral))
    assert info["family"] == "mixtral" and info["num_experts"] == 2


def test_gpt2_fused_c_attn_is_split_and_transposed(tmp_path):
    h = 12
    qkv = torch.randn(h, 3 * h)  # Conv1D layout (in, out)
    state = {"wte.weight": torch.randn(20, h), "h.0.attn.c_attn.weight": qkv, "h.0.attn.c_attn.bias": torch.randn(3 * h),
             "h.0.mlp.c_fc.weight": torch.randn(h, 4 * h), "h.0.mlp.c_proj.weight": torch.randn(4 * h, h)}
    view = open_model(_save(tmp_path, state))
    assert view.family.name == "gpt2"
    assert torch.equal(view.get("attn.k", 0), qkv.T[h:2 * h])
    assert view.shape("attn.v", 0) == (h, h) and view.shape("mlp.up", 0) == (4 * h, h)


def test_deepseek_mla_roles(tmp_path):
    h = 16
    state = {"model.embed_tokens.weight": torch.randn(30, h),
             "model.layers.0.self_attn.q_a_proj.weight": torch.randn(8, h),
             "model.layers.0.self_attn.kv_a_proj_with_mqa.weight": torch.randn(12, h),
             "model.layers.0.self_attn.kv_b_proj.weight": torch.randn(32, 8),
             "model.layers.0.mlp.gate_proj.weight": torch.randn(24, h),
             "model.layers.1.mlp.gate.weight": torch.randn(4, h),
             "model.layers.1.mlp.gate.e_score_correction_bias": torch.randn(4),
             **{f"model.layers.1.mlp.experts.{e}.up_proj.weight": torch.randn(6, h) for e in range(4)},
             "model.layers.1.mlp.shared_experts.up_proj.weight": torch.randn(12, h)}
    info = inspect_model(_save(tmp_path, state))
    assert info["family"] == "deepseek_v2" and info["num_experts"] == 4 and info["num_layers"] == 2
    assert info["roles"]["model.layers.1.mlp.gate.e_score_correction_bias"] == "layers.1.moe.router_bias"


def test_unmapped_tensors_are_listed_not_dropped(tmp_path, base_state):
    state = {**base_state, "model.some_new_thing.weight": torch.randn(3)}
    info = inspect_model(_save(tmp_path, state))
    assert info["unmapped"] == ["model.some_new_thing.weight"]


def test_stacked_experts_are_read_one_expert_range_at_a_time(tmp_path):
    h, e, f = 8, 3, 5
    stacked = torch.randn(e, f, h)
    state = {"token_embd.weight": torch.randn(10, h), "blk.0.attn_q.weight": torch.randn(h, h),
             "blk.0.ffn_up_exps.weight": stacked, "blk.0.ffn_gate_inp.weight": torch.randn(e, h)}
    view = open_model(_save(tmp_path, state))
    reads, slices = [], []
    real_get, real_slice = view.source.get, view.source.get_slice
    view.source.get = lambda name: reads.append(name) or real_get(name)
    view.source.get_slice = lambda name, k: slices.append((name, k)) or real_slice(name, k)
    assert view.experts(0) == [0, 1, 2]
    for k in range(e):
        assert torch.equal(view.get("moe.expert.up", 0, k), stacked[k])
    # never the whole [experts, out, in] block: each expert's own byte range, once
    assert reads == [] and slices == [("blk.0.ffn_up_exps.weight", k) for k in range(e)]
    assert view.facts["num_experts"] == 3
