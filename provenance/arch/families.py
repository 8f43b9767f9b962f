"""Family knowledge: tensor-name patterns mapped onto canonical roles.

A row is `pattern -> role` or `pattern -> (role, {"transposed": True})`.
`{L}` stands for a layer index and `{E}` for an expert index; any module prefix
(`model.`, `inner.`, `model.0.auto_model.`) is accepted before a pattern.
Adding a family is adding a Family row; tests read every row.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Role vocabulary. Per-layer roles carry a layer index, expert roles an expert index too.
GLOBAL_ROLES = ("embed", "pos_embed", "type_embed", "embed_norm", "embed_norm.bias", "final_norm",
                "final_norm.bias", "lm_head", "pooler", "pooler.bias")
LAYER_ROLES = (
    "attn.q", "attn.k", "attn.v", "attn.o", "attn.q.bias", "attn.k.bias", "attn.v.bias", "attn.o.bias",
    "attn.qkv", "attn.qkv.bias", "attn.q_norm", "attn.k_norm",
    "attn.q_a", "attn.q_a_norm", "attn.q_b", "attn.kv_a", "attn.kv_a_norm", "attn.kv_b",
    "norm.attn", "norm.attn.bias", "norm.mlp", "norm.mlp.bias",
    "mlp.gate", "mlp.up", "mlp.down", "mlp.up.bias", "mlp.down.bias", "mlp.gate_up",
    "moe.router", "moe.router_scale", "moe.router_bias",
    "moe.expert.gate", "moe.expert.up", "moe.expert.down",
    "moe.experts.gate", "moe.experts.up", "moe.experts.down",   # stacked: [experts, rows, cols]
    "moe.shared.gate", "moe.shared.up", "moe.shared.down", "moe.shared_gate",
)
# Fused tensors and the roles they split into, in order.
FUSED = {"attn.qkv": ("attn.q", "attn.k", "attn.v"), "attn.qkv.bias": ("attn.q.bias", "attn.k.bias", "attn.v.bias"),
         "mlp.gate_up": ("mlp.gate", "mlp.up")}


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]        # config.json model_type values (GGUF: "gguf-<arch>")
    markers: tuple[str, ...]            # roles that must be present to pick this family by names alone
    rows: dict = field(default_factory=dict)


def _attn(prefix: str, names: dict[str, str], bias: bool = True) -> dict:
    rows = {}
    for role, module in names.items():
        rows[f"{prefix}.{module}.weight"] = role
        if bias:
            rows[f"{prefix}.{module}.bias"] = f"{role}.bias"
    return rows


HF_DECODER = {
    "embed_tokens.weight": "embed",
    "norm.weight": "final_norm",
    "lm_head.weight": "lm_head",
    **_attn("layers.{L}.self_attn", {"attn.q": "q_proj", "attn.k": "k_proj", "attn.v": "v_proj", "attn.o": "o_proj"}),
    "layers.{L}.self_attn.q_norm.weight": "attn.q_norm",
    "layers.{L}.self_attn.k_norm.weight": "attn.k_norm",
    "layers.{L}.input_layernorm.weight": "norm.attn",
    "layers.{L}.post_attention_layernorm.weight": "norm.mlp",
    "layers.{L}.mlp.gate_proj.weight": "mlp.gate",
    "layers.{L}.mlp.up_proj.weight": "mlp.up",
    "layers.{L}.mlp.down_proj.weight": "mlp.down",
}
QWEN_MOE = {
    "layers.{L}.mlp.gate.weight": "moe.router",
    "layers.{L}.mlp.experts.{E}.gate_proj.weight": "moe.expert.gate",
    "layers.{L}.mlp.experts.{E}.up_proj.weight": "moe.expert.up",
    "layers.{L}.mlp.experts.{E}.down_proj.weight": "moe.expert.down",
    "layers.{L}.mlp.shared_expert.gate_proj.weight": "moe.shared.gate",
    "layers.{L}.mlp.shared_expert.up_proj.weight": "moe.shared.up",
    "layers.{L}.mlp.shared_expert.down_proj.weight": "moe.shared.down",
    "layers.{L}.mlp.shared_expert_gate.weight": "moe.shared_gate",
}
DEEPSEEK = {
    "layers.{L}.self_attn.q_a_proj.weight": "attn.q_a",
    "layers.{L}.self_attn.q_a_layernorm.weight": "attn.q_a_norm",
    "layers.{L}.self_attn.q_b_proj.weight": "attn.q_b",
    "layers.{L}.self_attn.kv_a_proj_with_mqa.weight": "attn.kv_a",
    "layers.{L}.self_attn.kv_a_layernorm.weight": "attn.kv_a_norm",
    "layers.{L}.self_attn.kv_b_proj.weight": "attn.kv_b",
    "layers.{L}.mlp.gate.weight": "moe.router",
    "layers.{L}.mlp.gate.e_score_correction_bias": "moe.router_bias",
    "layers.{L}.mlp.experts.{E}.gate_proj.weight": "moe.expert.gate",
    "layers.{L}.mlp.experts.{E}.up_proj.weight": "moe.expert.up",
    "layers.{L}.mlp.experts.{E}.down_proj.weight": "moe.expert.down",
    "layers.{L}.mlp.shared_experts.gate_proj.weight": "moe.shared.gate",
    "layers.{L}.mlp.shared_experts.up_proj.weight": "moe.shared.up",
    "layers.{L}.mlp.shared_experts.down_proj.weight": "moe.shared.down",
}
T = {"transposed": True}   # GPT-2's Conv1D stores weights as (in, out)

FAMILIES: tuple[Family, ...] = (
    Family("pangu_moe", ("pangu_moe", "PanguProMoE"), ("moe.router_scale",), {
        **HF_DECODER, **QWEN_MOE, "layers.{L}.mlp.router_scale": "moe.router_scale"}),
    Family("qwen2_moe", ("qwen2_moe", "qwen3_moe"), ("moe.router", "moe.expert.up"), {**HF_DECODER, **QWEN_MOE}),
    Family("deepseek_v2", ("deepseek_v2", "deepseek_v3"), ("attn.kv_a",), {**HF_DECODER, **DEEPSEEK}),
    Family("mixtral", ("mixtral",), ("moe.expert.up",), {
        **HF_DECODER,
        "layers.{L}.block_sparse_moe.gate.weight": "moe.router",
        "layers.{L}.block_sparse_moe.experts.{E}.w1.weight": "moe.expert.gate",
        "layers.{L}.block_sparse_moe.experts.{E}.w3.weight": "moe.expert.up",
        "layers.{L}.block_sparse_moe.experts.{E}.w2.weight": "moe.expert.down"}),
    Family("phi3", ("phi3",), ("attn.qkv",), {
        **HF_DECODER,
        "layers.{L}.self_attn.qkv_proj.weight": "attn.qkv",
        "layers.{L}.mlp.gate_up_proj.weight": "mlp.gate_up"}),
    Family("qwen3", ("qwen3",), ("attn.q_norm",), HF_DECODER),
    Family("qwen2", ("qwen2",), ("attn.q.bias",), HF_DECODER),
    Family("llama", ("llama", "mistral"), ("attn.q", "mlp.gate"), HF_DECODER),
    Family("gpt2", ("gpt2",), ("attn.qkv",), {
        "wte.weight": "embed", "wpe.weight": "pos_embed",
        "ln_f.weight": "final_norm", "ln_f.bias": "final_norm.bias", "lm_head.weight": "lm_head",
        "h.{L}.ln_1.weight": "norm.attn", "h.{L}.ln_1.bias": "norm.attn.bias",
        "h.{L}.attn.c_attn.weight": ("attn.qkv", T), "h.{L}.attn.c_attn.bias": "attn.qkv.bias",
        "h.{L}.attn.c_proj.weight": ("attn.o", T), "h.{L}.attn.c_proj.bias": "attn.o.bias",
        "h.{L}.ln_2.weight": "norm.mlp", "h.{L}.ln_2.bias": "norm.mlp.bias",
        "h.{L}.mlp.c_fc.weight": ("mlp.up", T), "h.{L}.mlp.c_fc.bias": "mlp.up.bias",
        "h.{L}.mlp.c_proj.weight": ("mlp.down", T), "h.{L}.mlp.c_proj.bias": "mlp.down.bias"}),
    Family("bert", ("bert",), ("attn.q", "mlp.up"), {
        "embeddings.word_embeddings.weight": "embed",
        "embeddings.position_embeddings.weight": "pos_embed",
        "embeddings.token_type_embeddings.weight": "type_embed",
        "embeddings.LayerNorm.weight": "embed_norm", "embeddings.LayerNorm.bias": "embed_norm.bias",
        **_attn("encoder.layer.{L}.attention.self", {"attn.q": "query", "attn.k": "key", "attn.v": "value"}),
        **_attn("encoder.layer.{L}.attention.output", {"attn.o": "dense"}),
        "encoder.layer.{L}.attention.output.LayerNorm.weight": "norm.attn",
        "encoder.layer.{L}.attention.output.LayerNorm.bias": "norm.attn.bias",
        **_attn("encoder.layer.{L}", {"mlp.up": "intermediate.dense", "mlp.down": "output.dense"}),
        "encoder.layer.{L}.output.LayerNorm.weight": "norm.mlp",
        "encoder.layer.{L}.output.LayerNorm.bias": "norm.mlp.bias",
        "pooler.dense.weight": "pooler", "pooler.dense.bias": "pooler.bias"}),
    Family("gguf_llama", ("gguf-llama", "gguf-qwen2", "gguf-qwen3", "gguf-qwen2moe", "gguf-mistral"), ("attn.q",), {
        "token_embd.weight": "embed", "output_norm.weight": "final_norm", "output.weight": "lm_head",
        **_attn("blk.{L}", {"attn.q": "attn_q", "attn.k": "attn_k", "attn.v": "attn_v", "attn.o": "attn_output"}),
        "blk.{L}.attn_q_norm.weight": "attn.q_norm", "blk.{L}.attn_k_norm.weight": "attn.k_norm",
        "blk.{L}.attn_norm.weight": "norm.attn", "blk.{L}.ffn_norm.weight": "norm.mlp",
        "blk.{L}.ffn_gate.weight": "mlp.gate", "blk.{L}.ffn_up.weight": "mlp.up", "blk.{L}.ffn_down.weight": "mlp.down",
        "blk.{L}.ffn_gate_inp.weight": "moe.router",
        "blk.{L}.ffn_gate_exps.weight": "moe.experts.gate", "blk.{L}.ffn_up_exps.weight": "moe.experts.up",
        "blk.{L}.ffn_down_exps.weight": "moe.experts.down",
        "blk.{L}.ffn_gate.{E}.weight": "moe.expert.gate", "blk.{L}.ffn_up.{E}.weight": "moe.expert.up",
        "blk.{L}.ffn_down.{E}.weight": "moe.expert.down",
        "blk.{L}.ffn_gate_shexp.weight": "moe.shared.gate", "blk.{L}.ffn_up_shexp.weight": "moe.shared.up",
        "blk.{L}.ffn_down_shexp.weight": "moe.shared.down"}),
)

# config.json keys that name the same fact in different families, first match wins
CONFIG_ALIASES = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_attention_heads": ("num_attention_heads", "n_head"),
    "num_key_value_heads": ("num_key_value_heads", "multi_query_group_num"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_hidden_size"),
    "num_experts": ("num_experts", "num_local_experts", "n_routed_experts"),
}
