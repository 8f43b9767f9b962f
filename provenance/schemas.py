"""Versions of every document the program writes, and the stamp that names the tool that wrote it.

Bump a version when a field changes meaning or disappears; adding a field is compatible.
docs/SCHEMAS.md describes each document; provenance/report/schemas/ holds its JSON Schema.
"""
from __future__ import annotations

from . import __distribution__, __version__

SCHEMA_VERSIONS = {
    "inspect": "1.0",
    "backends": "1.0",
    "fingerprint": "2.0",
    "compare": "2.0",
    "drift": "1.0",
    "drift_compare": "1.0",
    "suite": "1.0",
    "inputs": "1.0",
    "identity": "1.0",
    "claim": "1.0",
    "index_search": "1.0",
    "index_tree": "1.0",
    "index_export": "1.0",
    "match_neurons": "1.0",
}


def tool_record() -> dict:
    """Which program wrote a document: `{name, version}` (the distribution's name on the package index)."""
    return {"name": __distribution__, "version": __version__}


def stamp(doc: dict, kind: str) -> dict:
    """The document with `schema_version` and `tool` first; a version its producer already set is kept.

    Args:
        doc: a JSON document (a dict) about to be written or printed.
        kind: its key in SCHEMA_VERSIONS.
    Returns:
        A new dict: schema_version, tool, then the document's own keys.
    """
    head = {"schema_version": doc.get("schema_version", SCHEMA_VERSIONS[kind]), "tool": doc.get("tool", tool_record())}
    return {**head, **{k: v for k, v in doc.items() if k not in head}}
