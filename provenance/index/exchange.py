"""Sharing an index as one file: people exchange fingerprints of known models instead of their weights.

The export file is a zip archive (read member by member, never extracted to disk) holding
    manifest.json                         the document below
    fingerprints/<content_hash>.safetensors   each entry's fingerprint, byte for byte as indexed
manifest.json: {format, schema_version, exporter: {tool, tool_version, exported_by, exported_at},
origins: [{id, kind, identity, source, recorded_at}], entries: [{content_hash, name, role, family, format,
layers, facts, released, fingerprinted_by, backend, tool_version, added_at, origin, fingerprint_sha256}]}.
Local source paths are not exported.

Import checks everything before writing anything: member names and sizes, the manifest's fields,
each fingerprint's sha256, the fingerprint itself (the same validation as a fingerprint file) and
that it fingerprints the model the manifest names. One failure refuses the whole file. Entries
land in one transaction, each with an origin row that keeps the exporter's identity record and the
entry's own origin record from the exporting index.
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

from ..atomic import atomic_path
from ..errors import InputNotFound, MalformedInput, Unsupported
from ..progress import Progress
from ..schemas import SCHEMA_VERSIONS, tool_record
from .store import ROLES, Store, fingerprint_from_bytes, utc_now

FORMAT = "provenance-index-export"
MANIFEST = "manifest.json"
MEMBER = re.compile(r"^fingerprints/([0-9a-f]{64})\.safetensors$")
HASH = re.compile(r"^[0-9a-f]{64}$")
MAX_MEMBER_BYTES = 4 << 30       # one fingerprint of a very deep, wide model stays far below this
MAX_MANIFEST_BYTES = 256 << 20
MAX_RATIO = 200                  # uncompressed / compressed: beyond this a member is a zip bomb, not a fingerprint
ENTRY_FIELDS = {"content_hash": str, "name": str, "role": str, "layers": int, "facts": dict, "backend": dict,
                "origin": int, "fingerprint_sha256": str}
OPTIONAL_TEXT = ("family", "format", "released", "fingerprinted_by", "tool_version", "added_at")


def export_index(store: Store, target: Path, exported_by: str | None = None, hashes: list[str] | None = None,
                 progress: bool = False) -> dict:
    """Write the index (or the entries with the given content hashes) to one file, atomically.

    Args:
        store: the open index.
        target: the export file to write.
        exported_by: who exports (recorded in the manifest), or None.
        hashes: content hashes of the entries to export; None exports all.
        progress: show progress on stderr.
    Returns:
        The manifest written.
    """
    from .. import __version__
    entries = [e for e in store.entries() if hashes is None or e.content_hash in set(hashes)]
    origin_ids = {e.origin_id for e in entries}
    manifest = {
        "format": FORMAT, "schema_version": SCHEMA_VERSIONS["index_export"], "tool": tool_record(),
        "exporter": {"tool": "provenance", "tool_version": __version__, "exported_by": exported_by, "exported_at": utc_now()},
        "origins": [o for o in store.origins() if o["id"] in origin_ids],
        "entries": [{**{k: v for k, v in e.as_dict().items() if k not in ("id", "source", "origin_id")}, "origin": e.origin_id}
                    for e in entries],
    }
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1, allow_nan=False))
            tracker = Progress(len(entries), "index export", progress)
            for e in entries:
                zf.writestr(f"fingerprints/{e.content_hash}.safetensors", store.fingerprint_data(e.content_hash))
                tracker.step(e.name)
    return manifest


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: Path) -> bytes:
    if info.file_size > limit:
        raise MalformedInput(f"member {info.filename!r} is {info.file_size} bytes, above the {limit}-byte limit", path)
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        raise MalformedInput(f"member {info.filename!r} expands {info.file_size / info.compress_size:.0f}x: refused", path)
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) != info.file_size:
        raise MalformedInput(f"member {info.filename!r} does not have the size its header declares", path)
    return data


def _check_manifest(doc, path: Path) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise MalformedInput(f"not a provenance index export (format is not {FORMAT!r})", path)
    expected = SCHEMA_VERSIONS["index_export"]
    if str(doc.get("schema_version", "")).split(".")[0] != expected.split(".")[0]:
        raise Unsupported(f"index export schema {doc.get('schema_version')!r}; this version reads {expected}", path)
    if not isinstance(doc.get("exporter"), dict) or not isinstance(doc.get("origins"), list) \
            or not isinstance(doc.get("entries"), list):
        raise MalformedInput("manifest lacks exporter, origins or entries", path)
    origin_ids = set()
    for o in doc["origins"]:
        if not isinstance(o, dict) or not isinstance(o.get("id"), int) or not isinstance(o.get("identity"), dict):
            raise MalformedInput("manifest origin without an integer id and an identity object", path)
        origin_ids.add(o["id"])
    for k, e in enumerate(doc["entries"]):
        if not isinstance(e, dict):
            raise MalformedInput(f"manifest entry {k} is not an object", path)
        for name, kind in ENTRY_FIELDS.items():
            if not isinstance(e.get(name), kind) or isinstance(e.get(name), bool):
                raise MalformedInput(f"manifest entry {k}: field {name!r} missing or not {kind.__name__}", path)
        for name in OPTIONAL_TEXT:
            if e.get(name) is not None and not isinstance(e[name], str):
                raise MalformedInput(f"manifest entry {k}: field {name!r} must be text or null", path)
        if not HASH.match(e["content_hash"]) or not HASH.match(e["fingerprint_sha256"]):
            raise MalformedInput(f"manifest entry {k}: content_hash and fingerprint_sha256 must be 64 hex digits", path)
        if e["role"] not in ROLES:
            raise MalformedInput(f"manifest entry {k}: role must be one of {ROLES}", path)
        if e["origin"] not in origin_ids:
            raise MalformedInput(f"manifest entry {k}: origin {e['origin']} is not listed", path)


def read_export(path: Path, progress: bool = False) -> tuple[dict, list[tuple[dict, object, bytes]]]:
    """Open and validate an export file completely.

    Args:
        path: the export file.
        progress: show progress on stderr.
    Returns:
        (manifest, [(entry, Fingerprint, fingerprint bytes)]).
    Raises:
        InputNotFound: no such file.
        MalformedInput: anything wrong in it (exit 4).
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFound("no such index export", path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise MalformedInput(f"not an index export: {exc}", path) from None
    with zf:
        infos = {}
        for info in zf.infolist():
            if info.filename != MANIFEST and not MEMBER.match(info.filename):
                raise MalformedInput(f"unexpected member {info.filename!r} in an index export", path)
            if info.filename in infos:
                raise MalformedInput(f"member {info.filename!r} appears twice", path)
            infos[info.filename] = info
        if MANIFEST not in infos:
            raise MalformedInput("index export has no manifest.json", path)
        try:
            manifest = json.loads(_read_member(zf, infos[MANIFEST], MAX_MANIFEST_BYTES, path))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedInput(f"manifest.json is not valid JSON ({exc})", path) from None
        _check_manifest(manifest, path)
        listed = {f"fingerprints/{e['content_hash']}.safetensors" for e in manifest["entries"]}
        extra = set(infos) - listed - {MANIFEST}
        if extra:
            raise MalformedInput(f"fingerprints not listed in the manifest: {sorted(extra)[:3]}", path)
        out = []
        tracker = Progress(len(manifest["entries"]), "index import: validate", progress)
        try:
            for e in manifest["entries"]:
                member = f"fingerprints/{e['content_hash']}.safetensors"
                if member not in infos:
                    raise MalformedInput(f"entry {e['name']!r}: missing {member}", path)
                data = _read_member(zf, infos[member], MAX_MEMBER_BYTES, path)
                if hashlib.sha256(data).hexdigest() != e["fingerprint_sha256"]:
                    raise MalformedInput(f"entry {e['name']!r}: fingerprint does not match its sha256", path)
                fp = fingerprint_from_bytes(data, f"{path}: entry {e['name']!r}")
                if fp.model().get("content_hash") != e["content_hash"]:
                    raise MalformedInput(f"entry {e['name']!r}: the fingerprint is of another model (content hash differs)", path)
                out.append((e, fp, data))
                tracker.step(e["name"])
        except zipfile.BadZipFile as exc:
            raise MalformedInput(f"corrupt index export: {exc}", path) from None
    return manifest, out


def import_index(store: Store, path: Path, prepared: tuple | None = None) -> dict:
    """Import a validated export into the store in one transaction.

    Args:
        store: the index to import into.
        path: the export file.
        prepared: read_export(path)'s result when the caller already validated the file.

    Returns:
        {"imported": names, "skipped": names already indexed (by content hash), "exporter": the exporter record}.
    """
    path = Path(path)
    manifest, rows = read_export(path) if prepared is None else prepared
    file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    origins = {o["id"]: o for o in manifest["origins"]}
    imported, skipped = [], []
    with store.transaction():
        for e, fp, data in rows:
            identity = {"exporter": manifest["exporter"], "exported_origin": origins[e["origin"]]}
            origin = store.origin("import", identity, source=f"{path.name} sha256:{file_sha}")
            ok = store.insert(fp, origin_id=origin, role=e["role"], released=e.get("released"),
                              fingerprinted_by=e.get("fingerprinted_by"), name=e["name"], data=data,
                              added_at=e.get("added_at"), tool_version=e.get("tool_version"))
            (imported if ok else skipped).append(e["name"])
    return {"imported": imported, "skipped": skipped, "exporter": manifest["exporter"]}
