"""The claim file parser and the artifact audit: hostile files get one-line errors with the README's codes."""
from __future__ import annotations

import json
import os

import pytest
from safetensors.torch import save_file
import torch

from provenance import errors
from provenance.claims.audit import run_audit
from provenance.claims.claimfile import parse_claim
from provenance.claims.verdict import decide


def _release(folder, config=None, code=None, metadata=None):
    rel = folder / "release"
    rel.mkdir(parents=True)
    save_file({"model.embed_tokens.weight": torch.zeros(4, 2)}, rel / "model.safetensors", metadata=metadata or {"format": "pt"})
    if config is not None:
        (rel / "config.json").write_text(json.dumps(config))
    for name, text in (code or {}).items():
        (rel / name).write_text(text)
    return rel


def _claim(folder, body):
    path = folder / "claim.toml"
    path.write_text(body)
    return path


BASIC = '[model]\npath = "release"\n[claim]\norigin = "from-scratch"\nvendor = "Huawei"\nchip = "Ascend 910B"\nframework = "MindSpore"\ndtype = "bf16"\n'


def test_parse_resolves_paths(tmp_path):
    _release(tmp_path)
    claim = parse_claim(_claim(tmp_path, BASIC))
    assert claim.model["path"] == (tmp_path / "release").resolve()
    assert claim.claim["dtype"] == "bf16" and claim.suspects == [] and claim.segment is None


@pytest.mark.parametrize("body, code, words", [
    (BASIC + "typo = 1\n", errors.MALFORMED, "typo"),
    (BASIC.replace("vendor", "vendr"), errors.MALFORMED, "claim.vendr"),
    (BASIC + "[segment]\nstart = 'release'\n", errors.MALFORMED, "optimizer"),
    (BASIC + "[[suspects]]\npath = 'release'\ncolour = 'x'\n", errors.MALFORMED, "suspects[0].colour"),
    ("[model\npath=", errors.MALFORMED, "invalid TOML"),
    (BASIC.replace('"release"', '"../outside"'), errors.UNSAFE, "outside the claim folder"),
    (BASIC.replace('"release"', '"/etc"'), errors.UNSAFE, "not a relative path"),
    (BASIC.replace('"release"', '"missing"'), errors.NOT_FOUND, "missing"),
    (BASIC.replace('"bf16"', '"bf17"'), errors.MALFORMED, "bf17"),
    (BASIC.replace('"from-scratch"', '"derived-from"'), errors.MALFORMED, "parent"),
    (BASIC.replace('"from-scratch"', '3'), errors.MALFORMED, "claim.origin must be a str"),
    ('[claim]\norigin = "from-scratch"\n', errors.MALFORMED, "[model]"),
])
def test_hostile_claim_files(tmp_path, body, code, words):
    _release(tmp_path)
    (tmp_path / "outside").mkdir()
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "release").symlink_to(tmp_path / "release")
    with pytest.raises(errors.ProvenanceError) as exc:
        parse_claim(_claim(sub if "../outside" in body else tmp_path, body))
    assert exc.value.exit_code == code
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_symlink_leaving_folder_is_unsafe(tmp_path):
    rel = _release(tmp_path / "elsewhere")
    folder = tmp_path / "claim"
    folder.mkdir()
    (folder / "release").symlink_to(rel)
    with pytest.raises(errors.UnsafeInput):
        parse_claim(_claim(folder, BASIC))


QWEN_7B = {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
           "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "rope_theta": 1000000.0}
QWEN_HEADER = "# Copyright 2024 The Qwen team, Alibaba Group and the HuggingFace Inc. team. All rights reserved.\nimport torch\n"


def test_foreign_config_and_copyright_are_not_consistent(tmp_path):
    _release(tmp_path, QWEN_7B, {"modeling_vendor.py": QWEN_HEADER})
    checks = run_audit(parse_claim(_claim(tmp_path, BASIC)))
    by = {c.name: c for c in checks}
    assert by["audit.config"].result == "contradicts" and by["audit.config"].strength == "strong"
    assert "Qwen2.5-7B" in by["audit.config"].detail
    assert by["audit.code.copyright"].result == "contradicts" and by["audit.code.copyright"].strength == "weak"
    verdict, statement = decide(checks)
    assert verdict == "inconsistent" and "Qwen2.5-7B" in statement


def test_copyright_alone_is_weak(tmp_path):
    _release(tmp_path, {"model_type": "qwen2", "hidden_size": 64}, {"modeling_vendor.py": QWEN_HEADER})
    verdict, _ = decide(run_audit(parse_claim(_claim(tmp_path, BASIC))))
    assert verdict == "insufficient-evidence"


def test_huggingface_header_is_neutral_and_platform_markers_weigh(tmp_path):
    code = {"modeling_a.py": "# Copyright 2024 The HuggingFace Inc. team.\nimport torch_npu\n",
            "kernels.py": "import flash_attn\n"}
    _release(tmp_path, None, code, metadata={"format": "pt"})
    (tmp_path / "release" / "param_name_map.json").write_text("{}")
    checks = run_audit(parse_claim(_claim(tmp_path, BASIC)))
    assert not [c for c in checks if c.name == "audit.code.copyright"]
    platform = {c.detail.split()[0]: c.result for c in checks if c.name == "audit.code.platform"}
    assert platform == {"kernels.py": "contradicts", "modeling_a.py": "supports"}
    side = [c for c in checks if c.name == "audit.side_file"]
    assert side[0].result == "supports" and side[0].strength == "weak"


def test_chip_without_the_claimed_dtype_is_a_strong_contradiction(tmp_path):
    _release(tmp_path)
    checks = run_audit(parse_claim(_claim(tmp_path, BASIC.replace("910B", "910"))))
    assert any(c.name == "claim.dtype" and c.result == "contradicts" and c.strength == "strong" for c in checks)
    assert not any(c.name == "claim.dtype" for c in run_audit(parse_claim(_claim(tmp_path, BASIC))))


def test_only_audit_support_is_insufficient(tmp_path):
    _release(tmp_path, None, {"m.py": "# Copyright 2025 Huawei Technologies Co., Ltd\nimport mindspore\n"})
    checks = run_audit(parse_claim(_claim(tmp_path, BASIC)))
    assert all(c.result != "contradicts" for c in checks)
    assert any(c.result == "supports" for c in checks)
    assert decide(checks)[0] == "insufficient-evidence"
