"""Exchanging indexes as one file: round trip with identity records, and refusal of anything that fails validation."""
from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from provenance.cli import main
from provenance.errors import MALFORMED, MalformedInput
from provenance.index import Store, add_many
from provenance.index.exchange import export_index, import_index
from provenance.report.schemas import validate
from tests.index_fixtures import fingerprint_files

NAMES = ["base-s0", "base-s1", "base-s0-scratch_vocab"]


@pytest.fixture(scope="module")
def exported(zoo, tmp_path_factory):
    d = tmp_path_factory.mktemp("exchange")
    fps = fingerprint_files(zoo, NAMES, d / "fps")
    with Store(d / "src.db", create=True) as store:
        add_many(store, [str(fps[n]) for n in NAMES[:2]], role="base", released="2024-05-01", fingerprinted_by="lab A")
        add_many(store, [str(fps[NAMES[2]])])
        export_index(store, d / "known.pvx", exported_by="lab A auditors")
        rows = {e.content_hash: e for e in store.entries()}
    return d / "known.pvx", rows, fps


def test_the_manifest_follows_its_schema(exported):
    path, rows, _ = exported
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    validate(manifest, "index_export")
    assert {e["content_hash"] for e in manifest["entries"]} == set(rows)


def _rewrite(src, dst, edit):
    """Copy an export, letting edit(name, bytes) -> bytes | None change or drop members, or add ('extra', bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
        extra = edit("extra", None)
        if extra is not None:
            zout.writestr(*extra)
    return dst


def test_round_trip_keeps_fingerprints_metadata_and_the_exporters_identity(exported, tmp_path):
    path, rows, _ = exported
    with Store(tmp_path / "dst.db", create=True) as store:
        result = import_index(store, path)
        assert sorted(result["imported"]) == sorted(e.name for e in rows.values()) and not result["skipped"]
        for e in store.entries():
            src = rows[e.content_hash]
            assert (e.name, e.role, e.released, e.fingerprinted_by, e.fingerprint_sha256) == \
                   (src.name, src.role, src.released, src.fingerprinted_by, src.fingerprint_sha256)
            assert e.source is None  # local paths are not exported
        identities = [o["identity"] for o in store.origins()]
        assert identities and all(i["exporter"]["exported_by"] == "lab A auditors" for i in identities)
        assert {i["exported_origin"]["kind"] for i in identities} == {"local"}
        assert import_index(store, path)["skipped"] and store.integrity() == []


def _refused(path, tmp_path, match):
    db = tmp_path / "dst.db"
    with pytest.raises(MalformedInput, match=match):
        with Store(db, create=True) as store:
            import_index(store, path)
    with Store(db) as store:
        assert len(store) == 0  # nothing half-imported


def test_a_tampered_fingerprint_is_refused(exported, tmp_path):
    path, _, _ = exported
    flip = lambda n, b: (b[:-1] + bytes([b[-1] ^ 1])) if b is not None and n.startswith("fingerprints/") else (b if n != "extra" else None)
    _refused(_rewrite(path, tmp_path / "t.pvx", flip), tmp_path, "sha256")


def test_a_fingerprint_of_another_model_is_refused(exported, tmp_path):
    path, rows, fps = exported
    victim = next(h for h, e in rows.items() if e.name == "base-s1")
    other = fps["base-s0-scratch_vocab"].read_bytes()

    def swap(name, data):
        if name == f"fingerprints/{victim}.safetensors":
            return other
        if name == "manifest.json":
            doc = json.loads(data)
            for e in doc["entries"]:
                if e["content_hash"] == victim:
                    e["fingerprint_sha256"] = hashlib.sha256(other).hexdigest()
            return json.dumps(doc).encode()
        return None if name == "extra" else data
    _refused(_rewrite(path, tmp_path / "s.pvx", swap), tmp_path, "another model")


def test_an_invalid_fingerprint_is_refused(exported, tmp_path):
    path, rows, _ = exported
    victim = next(iter(rows))
    junk = b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}"

    def corrupt(name, data):
        if name == f"fingerprints/{victim}.safetensors":
            return junk
        if name == "manifest.json":
            doc = json.loads(data)
            for e in doc["entries"]:
                if e["content_hash"] == victim:
                    e["fingerprint_sha256"] = hashlib.sha256(junk).hexdigest()
            return json.dumps(doc).encode()
        return None if name == "extra" else data
    _refused(_rewrite(path, tmp_path / "c.pvx", corrupt), tmp_path, "entry")


@pytest.mark.parametrize("case", ["extra member", "bad role", "missing manifest", "not json"])
def test_malformed_exports_are_refused(exported, tmp_path, case):
    path, _, _ = exported

    def edit(name, data):
        if name == "extra":
            return ("../escape.txt", b"x") if case == "extra member" else None
        if name == "manifest.json":
            if case == "missing manifest":
                return None
            if case == "not json":
                return b"{not json"
            if case == "bad role":
                doc = json.loads(data)
                doc["entries"][0]["role"] = "root"
                return json.dumps(doc).encode()
        return data
    _refused(_rewrite(path, tmp_path / "m.pvx", edit), tmp_path, ".")


def test_a_zip_bomb_member_is_refused(exported, tmp_path):
    path, _, _ = exported
    bomb = tmp_path / "bomb.pvx"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "manifest.json":
                doc = json.loads(data)
                doc["padding"] = " " * (8 << 20)
                data = json.dumps(doc).encode()
            zout.writestr(info.filename, data)
    _refused(bomb, tmp_path, "expands")


def test_cli_export_import(exported, tmp_path, capsys):
    path, rows, _ = exported
    assert main(["-q", "index", "import", str(path), "--db", str(tmp_path / "a.db"), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["imported"]) == len(rows)
    assert main(["-q", "index", "export", str(tmp_path / "again.pvx"), "--db", str(tmp_path / "a.db")]) == 0
    assert main(["-q", "index", "import", str(tmp_path / "again.pvx"), "--db", str(tmp_path / "b.db")]) == 0
    (tmp_path / "junk.pvx").write_bytes(b"PK\x03\x04 truncated")
    assert main(["index", "import", str(tmp_path / "junk.pvx"), "--db", str(tmp_path / "c.db")]) == MALFORMED
    assert not (tmp_path / "c.db").exists()
