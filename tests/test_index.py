"""The fingerprint index: store, pre-filter summary, search with corrected p-values, CLI."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch

from provenance.cli import main
from provenance.errors import MALFORMED, NOT_FOUND, UNSUPPORTED, InputNotFound, MalformedInput, Unsupported
from provenance.fingerprint import Fingerprint, load_fingerprint
from provenance.index import Store, add_many
from provenance.index import summary as S
from provenance.index.search import holm, prefilter_scores, search
from provenance.report.schemas import validate
from tests.index_fixtures import bases, controls, derived, fingerprint_files, parent_of


@pytest.fixture(scope="module")
def fps(zoo, tmp_path_factory):
    names = bases() + controls() + derived()
    return fingerprint_files(zoo, names, tmp_path_factory.mktemp("index-fps"))


@pytest.fixture(scope="module")
def reference_db(fps, tmp_path_factory):
    """The lineage benchmark's bases (declared) and independent controls, as an index."""
    db = tmp_path_factory.mktemp("index-db") / "index.sqlite"
    with Store(db, create=True) as store:
        add_many(store, [str(fps[n]) for n in bases()], role="base")
        add_many(store, [str(fps[n]) for n in controls()])
    return db


# --- summary ---------------------------------------------------------------------------------------

def _disguise(fp: Fingerprint, seed: int = 0, duplicate: bool = False) -> Fingerprint:
    """The same model seen through a residual rotation, permuted (and optionally duplicated) neurons,
    Q/K rescaling and another embedding: what a derived model's body may look like."""
    g = torch.Generator().manual_seed(seed)
    dims = fp.attention_product(0, "qk").shape[0]
    rot, _ = torch.linalg.qr(torch.randn(dims, dims, generator=g, dtype=torch.float64))
    rot = rot.float()
    doc = json.loads(json.dumps(fp.doc))
    out = Fingerprint(doc)
    for i in range(fp.num_layers):
        for kind in ("qk", "ov"):
            out.put(f"body.{kind}", rot @ fp.attention_product(i, kind) @ rot.T, i)
        parts = fp.body_neurons(i)
        perm = torch.randperm(parts["up"].shape[0], generator=g)
        if duplicate:
            perm = torch.cat([perm, perm])  # every neuron copied into two experts
        for name, t in parts.items():
            out.put(f"body.{name}", t[perm] @ rot.T, i)
    tokens, rows = fp.embedding_rows()
    out.put("embed.rows", torch.randn(rows.shape, generator=g))
    return out


def test_summary_is_fixed_length_and_invariant_to_rotation_permutation_duplication_and_embeddings(fps):
    fp = load_fingerprint(fps["base-s0"])
    ref = S.summarize(fp)
    assert ref.shape == (S.DIMENSION,) and np.isfinite(ref).all()
    for seed, dup in ((1, False), (2, True)):
        assert np.allclose(S.summarize(_disguise(fp, seed, dup)), ref, atol=2e-5)


def test_summary_is_the_same_length_for_another_depth_and_moe(fps):
    for name in ("base-s0-remove_layer", "base-s0-insert_layer", "base-s0-pangu"):
        assert S.summarize(load_fingerprint(fps[name])).shape == (S.DIMENSION,)


def test_prefilter_scores_ignore_coordinates_a_model_lacks():
    q = np.array([1.0, np.nan, 3.0], dtype=np.float32)
    m = np.array([[1.0, 100.0, 3.0], [2.0, 0.0, 3.0], [np.nan, np.nan, np.nan]], dtype=np.float32)
    s = prefilter_scores(q, m)
    assert s[0] == 0.0 and s[1] < 0.0 and s[2] == -np.inf


def test_holm_counts_unconfirmed_models_as_p_one():
    assert holm([0.01, None, 0.001], searched=10) == [pytest.approx(0.09), None, pytest.approx(0.01)]
    assert holm([0.5, 0.5], searched=2) == [1.0, 1.0]


# --- store -----------------------------------------------------------------------------------------

def test_store_adds_once_per_content_hash_and_keeps_metadata(fps, tmp_path):
    with Store(tmp_path / "i.db", create=True) as store:
        origin = store.origin("local", {"tool": "test"})
        fp = load_fingerprint(fps["base-s0"])
        assert store.add(fp, origin_id=origin, role="base", released="2024-01-01", fingerprinted_by="auditor")
        assert not store.add(fp, origin_id=origin)
        (entry,) = store.entries()
        assert (entry.name, entry.role, entry.released, entry.fingerprinted_by) == ("base-s0", "base", "2024-01-01", "auditor")
        assert entry.facts["num_layers"] == 4 and entry.backend["backend"] == "cpu"
        again = store.fingerprint(entry.content_hash)
        assert torch.equal(again.attention_product(0, "qk"), fp.attention_product(0, "qk"))
        assert store.integrity() == []


def test_a_failed_transaction_leaves_nothing(fps, tmp_path):
    with Store(tmp_path / "i.db", create=True) as store:
        origin = store.origin("local", {"tool": "test"})
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.insert(load_fingerprint(fps["base-s0"]), origin_id=origin)
                raise RuntimeError("interrupted")
        assert len(store) == 0


def test_store_refuses_other_files_and_versions(tmp_path):
    with pytest.raises(InputNotFound):
        Store(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MalformedInput):
        Store(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(MalformedInput, match="schema_version"):
        Store(other)
    newer = tmp_path / "newer.db"
    Store(newer, create=True).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(Unsupported, match="99"):
        Store(newer)


def test_a_tampered_stored_fingerprint_is_refused(fps, tmp_path):
    db = tmp_path / "i.db"
    with Store(db, create=True) as store:
        add_many(store, [str(fps["base-s0"])])
        h = store.entries()[0].content_hash
    con = sqlite3.connect(db)
    con.execute("UPDATE entries SET fingerprint = substr(fingerprint, 1, 100)")
    con.commit()
    con.close()
    with Store(db) as store, pytest.raises(MalformedInput, match="sha256"):
        store.fingerprint(h)


# --- search ----------------------------------------------------------------------------------------

def test_every_derived_model_finds_its_parent_first_and_derived(fps, reference_db):
    with Store(reference_db) as store:
        for name in derived():
            result = search(store, load_fingerprint(fps[name]), top=0)
            first = result["candidates"][0]
            assert (first["name"], first["verdict"]) == (parent_of(name), "derived"), name
            assert first["p_value_corrected"] >= first["p_value"]
            assert [c for c in result["candidates"] if c["verdict"] == "derived"] == [first], name
            assert result["searched"] == len(bases()) + len(controls())


def test_no_independent_model_gets_a_derived_candidate(fps, reference_db):
    with Store(reference_db) as store:
        for name in controls():  # each control is indexed: its own entry is left out of its search
            result = search(store, load_fingerprint(fps[name]), top=0)
            assert result["query_indexed"] and all(c["content_hash"] != result["query"]["content_hash"]
                                                   for c in result["candidates"])
            assert not [c["name"] for c in result["candidates"] if c["verdict"] == "derived"], name


def test_the_correction_can_turn_a_derived_pair_inconclusive(fps, reference_db, monkeypatch):
    import provenance.index.search as search_mod
    real = search_mod.compare_fingerprints

    def barely(a, b):
        r = real(a, b)
        if r["verdict"] == "derived":
            r["p_value"] = 5e-5  # derived for one pair, not after Holm over every indexed model
        return r
    monkeypatch.setattr(search_mod, "compare_fingerprints", barely)
    with Store(reference_db) as store:
        result = search(store, load_fingerprint(fps["base-s0-finetune"]), top=0)
    first = result["candidates"][0]
    assert first["pair_verdict"] == "derived" and first["verdict"] == "inconclusive"
    assert first["p_value_corrected"] == pytest.approx(5e-5 * result["searched"])


def test_search_reports_structural_direction(fps, reference_db):
    with Store(reference_db) as store:
        for name in ("base-s0-upcycle", "base-s1-wash", "base-s0-prune"):
            first = search(store, load_fingerprint(fps[name]), top=2)["candidates"][0]
            assert first["direction"]["parent"] == "candidate", (name, first["direction"])


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_add_search_json_and_errors(fps, tmp_path, capsys):
    db = tmp_path / "cli.db"
    assert main(["-q", "index", "add", str(fps["base-s0"]), str(fps["base-s1"]), "--db", str(db), "--base"]) == 0
    capsys.readouterr()
    assert main(["-q", "index", "search", str(fps["base-s1-rotate"]), "--db", str(db), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    validate(doc, "index_search")
    assert doc["schema_version"] == "1.0" and doc["searched"] == 2
    assert set(doc["candidates"][0]) >= {"name", "content_hash", "verdict", "p_value", "p_value_corrected", "rank",
                                         "prefilter_score"}
    assert doc["candidates"][0]["name"] == "base-s1" and doc["candidates"][0]["verdict"] == "derived"
    assert main(["index", "search", str(fps["base-s1"]), "--db", str(tmp_path / "none.db")]) == NOT_FOUND
    (tmp_path / "bad.db").write_text("junk" * 400)
    assert main(["index", "search", str(fps["base-s1"]), "--db", str(tmp_path / "bad.db")]) == MALFORMED
    err = capsys.readouterr().err
    assert "bad.db" in err and len([l for l in err.splitlines() if l.startswith("provenance: error")]) == 2


def test_cli_add_reports_a_bad_input_and_indexes_the_rest(fps, tmp_path, capsys):
    (tmp_path / "models").mkdir()
    bad = tmp_path / "models" / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    db = tmp_path / "cli.db"
    code = main(["-q", "index", "add", str(fps["base-s0"]), str(bad), "--db", str(db)])
    assert code in (MALFORMED, UNSUPPORTED)
    assert "broken.safetensors" in capsys.readouterr().err
    with Store(db) as store:
        assert [e.name for e in store.entries()] == ["base-s0"]


def test_a_database_with_wrongly_typed_rows_is_malformed_not_a_crash(fps, tmp_path):
    db = tmp_path / "i.db"
    with Store(db, create=True) as store:
        add_many(store, [str(fps["base-s0"])])
    con = sqlite3.connect(db)
    con.execute("UPDATE entries SET facts = 'not json', summary = 42")
    con.commit()
    con.close()
    with Store(db) as store:
        with pytest.raises(MalformedInput, match="metadata"):
            store.entries()
        with pytest.raises(MalformedInput, match="summary"):
            store.summaries()


def test_cli_refuses_a_release_date_that_is_not_iso(fps, tmp_path):
    from provenance.errors import USAGE
    assert main(["index", "add", str(fps["base-s0"]), "--db", str(tmp_path / "i.db"), "--released", "last spring"]) == USAGE
    assert not (tmp_path / "i.db").exists()
