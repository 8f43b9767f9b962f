"""The lineage engine's contracts: the refactored engine reproduces the captured demo comparisons
(on demo checkpoints shipped as test data, so the inputs are the same bytes on every machine),
a registered signal flows into the verdict and the JSON, and the fingerprint record refuses
what it cannot read."""
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from provenance.backends import get_backend
from provenance.errors import MalformedInput, Unsupported
from provenance.fingerprint import Fingerprint, fingerprint_model, load_fingerprint
from provenance.fingerprint.record import tensor_key
from provenance.lineage import Signal, compare_fingerprints, register, unregister
from provenance.report.lineage import write_comparison_report
from provenance.zoo import DEMO_MODELS
from tests.nested import assert_same

FIXTURE = Path(__file__).parent / "data" / "compare_demo_v1.json"
# The five demo checkpoints the fixture was captured from. Training is not bit-identical across CPU instruction
# sets (AVX2 and AVX-512 give different weights), so the inputs ship as files rather than being rebuilt here.
DEMO_FILES = Path(__file__).parent / "data" / "demo_models"
# Fingerprints computed on another CPU differ in their last bits; the statistics must agree far inside any margin.
V1_SIGNALS = ("sigma_curves", "attention_cka", "neuron_match", "depth_alignment", "norm_vectors")
ADDED_FIELDS = {"direction", "tool"}           # top-level fields added since the capture
VERSIONED = {"schema_version"}          # the compare schema's major version moved with the fingerprint's
ADDED_SIGNAL_FIELDS = {"curves"}        # signal fields added since the capture


@pytest.fixture(scope="module")
def demo_fps():
    cpu = get_backend("cpu")
    return {n: fingerprint_model(DEMO_FILES / n, cpu, label=n) for n in DEMO_MODELS}


def _strip(result: dict) -> dict:
    r = {k: v for k, v in result.items() if k not in ADDED_FIELDS | VERSIONED}
    r["signals"] = [{k: v for k, v in s.items() if k not in ADDED_SIGNAL_FIELDS} for s in r["signals"]]
    return json.loads(json.dumps(r, sort_keys=True))


def test_engine_reproduces_the_captured_demo_comparisons(demo_fps):
    captured = json.loads(FIXTURE.read_text())
    assert len(captured) == 10
    for a, b in itertools.combinations(DEMO_MODELS, 2):
        fresh = _strip(compare_fingerprints(demo_fps[a], demo_fps[b], signals=V1_SIGNALS))
        before = {k: v for k, v in captured[f"{a}|{b}"].items() if k not in VERSIONED}
        assert_same(fresh, before, f"{a} vs {b}")


def test_a_registered_signal_flows_into_the_verdict_the_json_and_the_report(demo_fps, tmp_path):
    def constant_diagonal(ctx, pairs=None):
        m = np.full((ctx.fa.num_layers, ctx.fb.num_layers), 0.1)
        np.fill_diagonal(m, 0.9)
        return m

    register(Signal("dummy_diagonal", constant_diagonal, layerwise=True, calibrated=True, min_effect=0.5,
                    note="test signal"), before="depth_alignment")
    try:
        r = compare_fingerprints(demo_fps["base-s0"], demo_fps["base-s1"], signals=("dummy_diagonal", "depth_alignment"))
    finally:
        unregister("dummy_diagonal")
    s = next(s for s in r["signals"] if s["name"] == "dummy_diagonal")
    assert s["used"] and s["p_value"] < 1e-6 and s["effect"] == pytest.approx(0.8)
    assert r["verdict"] == "derived" and "dummy_diagonal" in r["reason"]
    assert r["matrices"]["dummy_diagonal"][0][0] == 0.9 and r["decision_rule"]["min_effect"] == {"dummy_diagonal": 0.5}
    assert "dummy_diagonal" not in [s["name"] for s in compare_fingerprints(demo_fps["base-s0"], demo_fps["base-s1"])["signals"]]
    write_comparison_report(tmp_path, r, demo_fps["base-s0"], demo_fps["base-s1"])
    report = (tmp_path / "report.md").read_text()
    assert "dummy_diagonal" in report and "test signal" in report  # its row, and its note
    assert (tmp_path / "figures" / "signal_dummy_diagonal.png").is_file()  # its figure: matrix and null


def test_fingerprint_documents_name_no_local_path_unless_asked(zoo):
    cpu = get_backend("cpu")
    path = zoo("base-s0")
    assert "path" not in fingerprint_model(path, cpu).doc["model"]
    fp = fingerprint_model(path, cpu, record_path=True)
    assert fp.doc["model"]["path"] == str(path) and fp.doc["model"]["content_hash"]
    assert str(path) not in json.dumps(fingerprint_model(path, cpu).doc)


def test_a_listed_feature_missing_from_the_file_is_malformed(demo_fps, tmp_path):
    fp = demo_fps["base-s0"]
    broken = Fingerprint(json.loads(json.dumps(fp.doc)), {k: v for k, v in fp.tensors.items() if ".gram.q" not in k})
    broken.save(tmp_path / "broken.safetensors")
    with pytest.raises(MalformedInput, match="gram.q"):
        load_fingerprint(tmp_path / "broken.safetensors")


def test_an_older_schema_is_refused_with_its_version(demo_fps, tmp_path):
    fp = demo_fps["base-s0"]
    old = Fingerprint({**json.loads(json.dumps(fp.doc)), "schema_version": "0.9"}, dict(fp.tensors))
    old.save(tmp_path / "old.safetensors")
    with pytest.raises(Unsupported, match=r"'0\.9'.*fingerprint the model again"):
        load_fingerprint(tmp_path / "old.safetensors")


def test_inconsistent_shapes_are_malformed_not_a_crash(demo_fps, tmp_path):
    fp = demo_fps["base-s0"]
    tensors = dict(fp.tensors)
    tensors[tensor_key("body.qk", 1)] = tensors[tensor_key("body.qk", 1)][:5]
    Fingerprint(json.loads(json.dumps(fp.doc)), tensors).save(tmp_path / "bad.safetensors")
    with pytest.raises(MalformedInput, match="layer 1 body.qk has shape"):
        load_fingerprint(tmp_path / "bad.safetensors")
