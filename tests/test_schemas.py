"""Every JSON document the program writes conforms to the JSON Schema shipped with it."""
import json

import pytest
from safetensors import safe_open

import provenance
from provenance import api
from provenance.cli import main
from provenance.report.schemas import SchemaError, documents, errors, schema, validate
from provenance.schemas import SCHEMA_VERSIONS


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("schemas") / "demo"
    api.demo(out, backends=["cpu"], claims=False)
    return out


def _fingerprint_doc(path):
    with safe_open(str(path), "pt") as fh:
        return json.loads(fh.metadata()["provenance_fingerprint"])


def _cli_json(capsys, *argv):
    assert main(["--quiet", *map(str, argv)]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_versioned_document_has_a_schema():
    assert set(documents()) == set(SCHEMA_VERSIONS)
    for name in documents():
        assert schema(name)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_document_of_the_demo_bundle_validates(demo_dir):
    checked = {"suite": demo_dir / "suite.json", "inputs": demo_dir / "inputs.json", "drift": demo_dir / "drift.json"}
    for kind, path in checked.items():
        validate(json.loads(path.read_text()), kind, path)
    identities = sorted((demo_dir / "identity").glob("*.json"))
    assert [p.stem for p in identities] == ["cpu"]
    for path in identities:
        validate(json.loads(path.read_text()), "identity", path)
    fingerprints = sorted((demo_dir / "fingerprints").glob("*.safetensors"))
    assert len(fingerprints) == 5
    for path in fingerprints:
        validate(_fingerprint_doc(path), "fingerprint", path)
    for path in sorted((demo_dir / "comparisons").glob("*/*.json")):  # reports may add JSON beside their pages
        doc = json.loads(path.read_text())
        validate(doc, "compare", path)


def test_every_printed_document_validates(demo_dir, zoo, capsys):
    validate(_cli_json(capsys, "backends", "--json"), "backends")
    validate(_cli_json(capsys, "inspect", zoo("base-s0"), "--json"), "inspect")
    fingerprint = demo_dir / "fingerprints" / "base-s0.cpu.safetensors"
    validate(_cli_json(capsys, "compare", fingerprint, zoo("base-s1"), "--json"), "compare")
    drift = demo_dir / "drift.json"
    validate(_cli_json(capsys, "drift", "compare", drift, drift, "--json"), "drift_compare")


def test_every_document_names_its_version_and_tool(demo_dir):
    docs = [json.loads((demo_dir / name).read_text()) for name in ("suite.json", "inputs.json", "drift.json")]
    docs.append(json.loads((demo_dir / "identity" / "cpu.json").read_text()))
    docs.append(_fingerprint_doc(demo_dir / "fingerprints" / "base-s1.cpu.safetensors"))
    for doc in docs:
        assert doc["schema_version"] and doc["tool"] == {"name": "provenance-verifier", "version": provenance.__version__}


def test_schemas_are_strict_where_it_matters(demo_dir):
    suite = json.loads((demo_dir / "suite.json").read_text())
    pair = suite["compare"][0]
    bad_verdict = {**suite, "compare": [{**pair, "verdict": "probably"}]}
    assert any("probably" in e for e in errors(bad_verdict, "suite"))
    assert errors({k: v for k, v in suite.items() if k != "tool"}, "suite") == ["(root): 'tool' is a required property"]
    inputs = json.loads((demo_dir / "inputs.json").read_text())
    short_hash = {**inputs, "inputs": [{**inputs["inputs"][0], "content_hash": "abc"}]}
    assert errors(short_hash, "inputs")
    with pytest.raises(SchemaError, match="not a valid inputs document"):
        validate({**inputs, "extra": 1}, "inputs")
    assert errors({"schema_version": 1, "tool": suite["tool"], "backends": []}, "backends")


def test_schemas_stay_open_where_the_engine_grows(demo_dir):
    """New lineage signals and new per-layer fingerprint keys must not break validation."""
    suite = json.loads((demo_dir / "suite.json").read_text())
    pair = suite["compare"][0]
    grown = {**pair, "signals": pair["signals"] + [{"name": "new_signal", "statistic": 0.5, "p_value": 0.01,
                                                     "used": True, "new_field": [1, 2]}]}
    assert errors({**suite, "compare": [grown]}, "suite") == []
    fp = _fingerprint_doc(demo_dir / "fingerprints" / "base-s0.cpu.safetensors")
    fp["layers"][0]["new_per_layer_key"] = {"anything": 1}
    fp["new_section"] = {}
    assert errors(fp, "fingerprint") == []


def test_schema_files_ship_with_the_installed_package():
    from importlib.metadata import files
    shipped = {f.name for f in files("provenance-verifier") or [] if f.name.endswith(".schema.json")}
    if not shipped:  # an editable install lists no package files; the folder is the package then
        from importlib import resources
        shipped = {e.name for e in resources.files("provenance.report.schemas").iterdir() if e.name.endswith(".schema.json")}
    assert {f"{name}.schema.json" for name in documents()} <= shipped
