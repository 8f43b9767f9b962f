"""Family trees over an index: every parent-child edge, no false edge, directions only where structure says."""
from __future__ import annotations

import pytest

from provenance.index import Store, add_many
from provenance.index.report import write_tree_report
from provenance.index.tree import build_tree
from provenance.report.schemas import validate
from tests.index_fixtures import fingerprint_files, immediate_parent

CHILDREN = ["base-s0-finetune", "base-s0-permute", "base-s0-int8", "base-s0-prune", "base-s0-upcycle", "base-s0-wash",
            "base-s1-remove_layer", "base-s1-insert_layer", "base-s1-rotate", "base-s0-pangu", "base-s0-pangu_rotate"]
DIRECTED = {"base-s0-prune", "base-s0-upcycle", "base-s0-wash", "base-s1-remove_layer", "base-s1-insert_layer", "base-s0-pangu"}
OTHERS = ["base-s0-scratch_vocab", "base-s1-scratch_moe"]


@pytest.fixture(scope="module")
def tree_doc(zoo, tmp_path_factory):
    fps = fingerprint_files(zoo, ["base-s0", "base-s1"] + CHILDREN + OTHERS, tmp_path_factory.mktemp("tree-fps"))
    db = tmp_path_factory.mktemp("tree-db") / "index.sqlite"
    with Store(db, create=True) as store:
        add_many(store, [str(fps[n]) for n in ("base-s0", "base-s1")], role="base")
        add_many(store, [str(fps[n]) for n in CHILDREN + OTHERS])
        return build_tree(store)


def test_tree_recovers_every_parent_child_edge_and_no_false_edge(tree_doc):
    validate(tree_doc, "index_tree")
    edges = {frozenset((e["a"], e["b"])) for e in tree_doc["edges"]}
    # a near copy of a derivative (pangu_rotate: pangu turned, no training) hangs below it, not below the base
    assert edges == {frozenset((immediate_parent(c), c)) for c in CHILDREN}
    assert frozenset(("base-s0-pangu", "base-s0-pangu_rotate")) in edges
    assert tree_doc["compared"] == 15 * 14 // 2


def test_tree_directions_are_structural_and_right(tree_doc):
    directed = {e["b"]: e["parent"] for e in tree_doc["edges"] if e["parent"] is not None}
    assert set(directed) == DIRECTED
    assert all(parent == immediate_parent(child) for child, parent in directed.items())
    for e in tree_doc["edges"]:
        if e["b"] in ("base-s0-permute", "base-s0-int8", "base-s0-finetune"):  # the same function, or no structure
            assert e["parent"] is None


def test_edges_are_listed_strongest_first_with_corrected_p_values(tree_doc):
    strengths = [e["strength"] for e in tree_doc["edges"]]
    assert strengths == sorted(strengths, reverse=True)
    assert all(e["p_value_corrected"] >= e["p_value"] for e in tree_doc["edges"])


def test_without_declared_bases_attachment_is_by_evidence(tree_doc, zoo, tmp_path):
    # the same models with no declared base: still a forest over the derived pairs, never a control attached
    fps = fingerprint_files(zoo, ["base-s0", "base-s0-prune", "base-s0-upcycle", "base-s0-scratch_vocab"], tmp_path / "fps")
    with Store(tmp_path / "i.db", create=True) as store:
        add_many(store, [str(p) for p in fps.values()])
        doc = build_tree(store)
    names = {n for e in doc["edges"] for n in (e["a"], e["b"])}
    assert "base-s0-scratch_vocab" not in names and len(doc["edges"]) == 2
    assert all(e["attached_by"].startswith("stronger evidence") for e in doc["edges"])
    assert {frozenset((e["a"], e["b"])) for e in doc["edges"]} <= {frozenset(("base-s0", "base-s0-prune")),
                                                                    frozenset(("base-s0", "base-s0-upcycle")),
                                                                    frozenset(("base-s0-prune", "base-s0-upcycle"))}


def test_tree_report_files(tree_doc, tmp_path):
    write_tree_report(tmp_path / "rep", tree_doc)
    assert (tmp_path / "rep" / "tree.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "rep" / "tree.md").read_text()
    assert "base-s0-prune" in text and "![forest](tree.png)" in text
