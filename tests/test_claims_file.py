"""The claim file parser and the artifact audit: hostile files get one-line errors with the README's codes."""
from __future__ import annotations

import json

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


def test_gguf_metadata_naming_another_organization_and_base_model(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    writer.add_name("Vendor-M")
    writer.add_organization("Alibaba Qwen")
    writer.add_base_model_count(1)
    writer.add_base_model_name(0, "Qwen2.5-7B")
    writer.add_tensor("token_embd.weight", np.zeros((4, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    body = '[model]\npath = "m.gguf"\nlabel = "Vendor-M"\n[claim]\norigin = "from-scratch"\nvendor = "Huawei"\n'
    by = {c.name: c for c in run_audit(parse_claim(_claim(tmp_path, body)))}
    assert by["audit.gguf.organization"].result == "contradicts" and "Alibaba" in by["audit.gguf.organization"].detail
    assert by["audit.gguf.base_model"].result == "contradicts" and "Qwen2.5-7B" in by["audit.gguf.base_model"].detail
    assert decide(list(by.values()))[0] == "insufficient-evidence"  # metadata anyone can write stays weak


def _drift_report(path, npu_err, cpu_err=1e-2, version="1.0"):
    rows = [{"kernel": "matmul", "backend": b, "dtype": "bf16", "mode": "ieee", "max_rel_err": e, "emulated": False}
            for b, e in (("cpu", cpu_err), ("npu", npu_err))]
    path.write_text(json.dumps({"schema_version": version, "rows": rows}))
    return path


def test_drift_reports_widen_the_envelope_by_the_device_to_cpu_ratio(tmp_path):
    from provenance.claims.drift_scale import envelope_scale
    scale, used = envelope_scale([_drift_report(tmp_path / "d.json", 4e-2)], "bf16")
    assert scale == pytest.approx(4.0) and used[0]["backend"] == "npu"
    assert envelope_scale([_drift_report(tmp_path / "d.json", 5e-3)], "bf16")[0] == 1.0  # never narrower than measured here
    assert envelope_scale([_drift_report(tmp_path / "d.json", 4e-2)], "fp32")[0] == 1.0  # other dtype: no rows apply
    with pytest.raises(errors.MalformedInput, match="schema"):
        envelope_scale([_drift_report(tmp_path / "d.json", 4e-2, version="9.0")], "bf16")


def test_drift_report_paths_are_confined(tmp_path):
    _release(tmp_path)
    (tmp_path / "ref.safetensors").write_bytes(b"")
    body = BASIC + '[reference_outputs]\nfile = "ref.safetensors"\nmode = "bf16"\ndrift_reports = ["../d.json"]\n'
    with pytest.raises(errors.UnsafeInput, match=r"drift_reports\[0\]"):
        parse_claim(_claim(tmp_path, body))
