"""JSON Schemas (draft 2020-12) of every document the program writes, and a validator.

One `<document>.schema.json` per document, named as in provenance.schemas.SCHEMA_VERSIONS;
`common.schema.json` holds the shared definitions (tool, identity record, signal, ...).
docs/SCHEMAS.md describes each document in words.

    from provenance.report.schemas import validate
    validate(doc, "compare")   # raises SchemaError naming the first offending field
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from ...errors import MalformedInput

SCHEMA_SUFFIX = ".schema.json"


class SchemaError(MalformedInput):
    """A document that does not match its schema (exit code of malformed input)."""


@lru_cache(maxsize=1)
def _schemas() -> dict[str, dict]:
    folder = resources.files(__name__)
    return {entry.name[: -len(SCHEMA_SUFFIX)]: json.loads(entry.read_text(encoding="utf-8"))
            for entry in folder.iterdir() if entry.name.endswith(SCHEMA_SUFFIX)}


def documents() -> list[str]:
    """Names of the documents that have a schema (common, the shared definitions, excluded)."""
    return sorted(name for name in _schemas() if name != "common")


def schema(document: str) -> dict:
    """The JSON Schema of one document.

    Args:
        document: its name, e.g. "compare", "drift", "suite".
    Returns:
        The schema as a dict.
    """
    schemas = _schemas()
    if document not in schemas or document == "common":
        raise KeyError(f"no schema for {document!r} (known: {', '.join(documents())})")
    return schemas[document]


@lru_cache(maxsize=None)
def _validator(document: str) -> Draft202012Validator:
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in _schemas().values())
    return Draft202012Validator(schema(document), registry=registry)


def errors(doc: object, document: str) -> list[str]:
    """Every way `doc` departs from its schema, one line each ("path: message"); empty when it conforms.

    Args:
        doc: the parsed JSON document.
        document: its schema's name.
    Returns:
        Lines, in path order.
    """
    found = sorted(_validator(document).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {' '.join(e.message.split())[:200]}" for e in found]


def validate(doc: object, document: str, source: object | None = None) -> None:
    """Raise SchemaError unless `doc` conforms to the schema of `document`.

    Args:
        doc: the parsed JSON document.
        document: its schema's name, e.g. "compare".
        source: the file it came from, named in the error.
    """
    problems = errors(doc, document)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SchemaError(f"not a valid {document} document: {problems[0]}{more}", source)
