"""The library API: every call returns its document, the backend identity and the input hashes."""
import json

import pytest

from provenance import api, errors
from provenance.report.schemas import validate


def test_compare_result_carries_identity_and_input_hashes(zoo, tmp_path):
    result = api.compare(zoo("base-s0"), zoo("base-s0-finetune"), report=tmp_path / "r")
    assert isinstance(result, api.CompareResult) and result.verdict == "derived"
    assert result.to_json()["backend"] == result.identity["cpu"] and result.identity["cpu"]["backend"] == "cpu"
    assert set(result.input_hashes) == {"base-s0", "base-s0-finetune"}
    assert all(len(h) == 64 for h in result.input_hashes.values())
    assert result.written == [tmp_path / "r"] and (tmp_path / "r" / "report.md").is_file()
    validate(json.loads(json.dumps(result.to_json())), "compare")


def test_fingerprint_then_compare_the_files(zoo, tmp_path):
    fa = api.fingerprint(zoo("base-s0"), tmp_path / "a.safetensors")
    fb = api.fingerprint(zoo("base-s1"), tmp_path / "b.safetensors")
    assert fa.written == [tmp_path / "a.safetensors"] and fa.identity["cpu"]["backend"] == "cpu"
    assert fa.input_hashes["base-s0"] == api.inspect(zoo("base-s0")).to_json()["content_hash"]
    validate(fa.to_json(), "fingerprint")
    assert api.compare(tmp_path / "a.safetensors", tmp_path / "b.safetensors").verdict == "independent"


def test_fingerprint_output_must_be_safetensors_and_outside_the_model(zoo, tmp_path):
    with pytest.raises(ValueError, match="safetensors"):
        api.fingerprint(zoo("base-s0"), tmp_path / "a.json")
    with pytest.raises(errors.UnsafeInput):
        api.fingerprint(zoo("base-s0"), zoo("base-s0") / "fp.safetensors")
    assert not (zoo("base-s0") / "fp.safetensors").exists()


def test_backends_and_inspect_documents():
    rows = api.backends()
    assert rows.rows[0]["name"] == "cpu" and "cpu" in rows.identity
    validate(rows.to_json(), "backends")


def test_drift_compare_reads_and_checks_its_inputs(tmp_path):
    with pytest.raises(errors.InputNotFound):
        api.drift_compare([tmp_path / "missing.json"])
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(errors.MalformedInput, match="not a drift report"):
        api.drift_compare([tmp_path / "list.json"])
