"""What the artifact audit knows, as data: published configs, organizations, code markers, chips.

Published configs list only the values that define a family's shapes (as in each model's
config.json on its hub page); an exact match of all of them is what the audit reports.
"""
from __future__ import annotations

# name -> (organization, config values). Checked against config.json key by key.
PUBLISHED_CONFIGS: dict[str, tuple[str, dict]] = {
    "Qwen2-7B / Qwen2.5-7B": ("Alibaba (Qwen)", {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                                      "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064}),
    "Qwen2.5-14B": ("Alibaba (Qwen)", {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 48,
                                       "num_attention_heads": 40, "vocab_size": 152064}),
    "Qwen2-72B / Qwen2.5-72B": ("Alibaba (Qwen)", {"hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
                                       "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 152064}),
    "Qwen2-57B-A14B": ("Alibaba (Qwen)", {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                                          "num_key_value_heads": 4, "num_experts": 64, "num_experts_per_tok": 8,
                                          "moe_intermediate_size": 2560, "shared_expert_intermediate_size": 20480}),
    "Qwen1.5-MoE-A2.7B": ("Alibaba (Qwen)", {"hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
                                             "num_experts": 60, "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
                                             "shared_expert_intermediate_size": 5632, "vocab_size": 151936}),
    "Llama-3-8B": ("Meta", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0}),
    "Llama-3-70B": ("Meta", {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                             "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256}),
    "Mistral-7B-v0.1": ("Mistral AI", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                                       "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000}),
    "DeepSeek-V2-Lite": ("DeepSeek", {"hidden_size": 2048, "num_hidden_layers": 27, "num_attention_heads": 16,
                                      "kv_lora_rank": 512, "moe_intermediate_size": 1408, "n_routed_experts": 64,
                                      "vocab_size": 102400}),
}
# A match needs this many of a config's keys at least, so a two-key coincidence never counts.
MIN_MATCHED_KEYS = 5

# Organizations as copyright holders name them -> canonical name. Holders absent here (HuggingFace,
# EleutherAI, whose headers every transformers-derived file carries) say nothing about the weights.
ORGANIZATIONS: dict[str, str] = {
    r"qwen|alibaba": "Alibaba (Qwen)",
    r"meta platforms|facebook": "Meta",
    r"mistral": "Mistral AI",
    r"deepseek": "DeepSeek",
    r"huawei|ascend|mindspore": "Huawei",
    r"google": "Google",
    r"microsoft": "Microsoft",
    r"nvidia": "NVIDIA",
    r"openai": "OpenAI",
    r"zhipu|thudm": "Zhipu AI",
    r"01[.-]?ai": "01.AI",
    r"baichuan": "Baichuan",
}

# vendor names as claims spell them -> canonical organization
VENDORS = {"huawei": "Huawei", "nvidia": "NVIDIA", "alibaba": "Alibaba (Qwen)", "qwen": "Alibaba (Qwen)", "meta": "Meta",
           "mistral": "Mistral AI", "deepseek": "DeepSeek", "google": "Google", "microsoft": "Microsoft"}

# Patterns in shipped modeling code -> (platform it points to, what it shows). Both are weak:
# imports show where code is meant to run, not where the weights were trained.
CODE_MARKERS: dict[str, tuple[str, str]] = {
    r"^\s*(import|from)\s+torch_npu\b": ("ascend", "imports torch_npu (Ascend NPU runtime)"),
    r"^\s*(import|from)\s+mindspore\b": ("mindspore", "imports MindSpore"),
    r"^\s*(import|from)\s+(flash_attn|xformers|apex)\b": ("cuda", "imports a CUDA-only kernel library"),
    r"^\s*(import|from)\s+triton\b": ("cuda", "imports Triton (GPU kernels)"),
    r"\.cuda\(\)|torch\.cuda\.|device\s*=\s*['\"]cuda": ("cuda", "places tensors on CUDA"),
    r"\.npu\(\)|torch\.npu\.|device\s*=\s*['\"]npu": ("ascend", "places tensors on an Ascend NPU"),
}

# Framework side-files beside the weights -> framework they point to.
SIDE_FILES = {
    "hyper_param.safetensors": "mindspore", "param_name_map.json": "mindspore", "mindspore_model.ckpt": "mindspore",
    "flax_model.msgpack": "jax", "tf_model.h5": "tensorflow", "pytorch_model.bin": "pytorch",
}
# safetensors __metadata__ "format" values -> framework that serialized the file
METADATA_FORMATS = {"pt": "pytorch", "tf": "tensorflow", "flax": "jax", "np": "numpy", "mlx": "mlx", "ms": "mindspore",
                    "mindspore": "mindspore"}

# Chips: vendor, platform family, training dtypes the hardware supports natively.
CHIPS: dict[str, dict] = {
    "ascend 910b": {"vendor": "Huawei", "platform": "ascend", "dtypes": ("fp32", "hf32", "bf16", "fp16")},
    "ascend 910c": {"vendor": "Huawei", "platform": "ascend", "dtypes": ("fp32", "hf32", "bf16", "fp16")},
    "ascend 910": {"vendor": "Huawei", "platform": "ascend", "dtypes": ("fp32", "fp16")},
    "h100": {"vendor": "NVIDIA", "platform": "cuda", "dtypes": ("fp32", "tf32", "bf16", "fp16")},
    "h800": {"vendor": "NVIDIA", "platform": "cuda", "dtypes": ("fp32", "tf32", "bf16", "fp16")},
    "a100": {"vendor": "NVIDIA", "platform": "cuda", "dtypes": ("fp32", "tf32", "bf16", "fp16")},
    "a800": {"vendor": "NVIDIA", "platform": "cuda", "dtypes": ("fp32", "tf32", "bf16", "fp16")},
    "v100": {"vendor": "NVIDIA", "platform": "cuda", "dtypes": ("fp32", "fp16")},
    "cpu": {"vendor": "", "platform": "cpu", "dtypes": ("fp32", "bf16")},
}
FRAMEWORKS = {"mindspore": "mindspore", "pytorch": "pytorch", "torch": "pytorch", "jax": "jax",
              "megatron": "pytorch", "deepspeed": "pytorch", "mindformers": "mindspore", "tensorflow": "tensorflow"}
# platform -> code markers that support it (others weigh against a claim of it)
PLATFORM_MARKERS = {"ascend": ("ascend", "mindspore"), "cuda": ("cuda",), "cpu": ()}
