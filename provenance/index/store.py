"""The index store: one SQLite file holding fingerprints, their metadata and pre-filter summaries.

Every write is one transaction: a run killed at any point leaves the database as it was after its
last committed entry (SQLite rolls back a partial transaction when the file is next opened). The
schema is versioned in its own table; a file from another major version is refused, never guessed at.

Tables:
    schema_version(version)            one row: the store's schema version
    origins(id, kind, identity, ...)   where entries came from: this installation, or an imported file
                                       with the exporter's identity record kept verbatim
    entries(...)                       one row per fingerprinted model, unique by content hash
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputNotFound, MalformedInput, Unsupported
from . import summary as S

STORE_VERSION = 1
ROLES = ("base", "model")  # a declared base model (a known published base), or any other checkpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS origins (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('local', 'import')),
    identity TEXT NOT NULL,          -- JSON: who and what produced these entries
    source TEXT,                     -- imported file's name and sha256, for imports
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    content_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('base', 'model')),
    family TEXT,
    format TEXT,
    layers INTEGER NOT NULL,
    facts TEXT NOT NULL,             -- JSON: shape facts from the fingerprint
    source TEXT,                     -- where the model was read from (as given), or the fingerprint file
    released TEXT,                   -- optional release date (ISO 8601), used only to order attachments in the tree
    fingerprinted_by TEXT,           -- who fingerprinted it (free text, optional)
    backend TEXT NOT NULL,           -- JSON: the fingerprint's backend identity
    tool_version TEXT,
    added_at TEXT NOT NULL,
    origin_id INTEGER NOT NULL REFERENCES origins(id),
    summary_version INTEGER NOT NULL,
    summary BLOB NOT NULL,           -- float32[summary.DIMENSION]
    fingerprint_sha256 TEXT NOT NULL,
    fingerprint BLOB NOT NULL        -- the fingerprint file's bytes (safetensors, no pickle)
);
"""
ENTRY_COLUMNS = ("id", "content_hash", "name", "role", "family", "format", "layers", "facts", "source", "released",
                 "fingerprinted_by", "backend", "tool_version", "added_at", "origin_id", "fingerprint_sha256")


def utc_now() -> str:
    """The current time as the index records it.

    Returns:
        UTC, ISO 8601 to the second ("2026-01-31T12:00:00Z").
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def fingerprint_bytes(fp) -> bytes:
    """The fingerprint's file bytes (Fingerprint.save writes a file; we keep exactly those bytes).

    Args:
        fp: a Fingerprint.
    Returns:
        The safetensors file's bytes.
    """
    with tempfile.TemporaryDirectory(prefix="provenance-index-") as tmp:
        path = Path(tmp) / "fingerprint.safetensors"
        fp.save(path)
        return path.read_bytes()


def fingerprint_from_bytes(data: bytes, where: str):
    """Load and validate fingerprint bytes through the same checks as a fingerprint file.

    Args:
        data: fingerprint file bytes.
        where: what they are, for messages (the database and entry).
    Returns:
        The Fingerprint.
    Raises:
        MalformedInput: naming `where`.
    """
    from ..fingerprint import load_fingerprint
    with tempfile.TemporaryDirectory(prefix="provenance-index-") as tmp:
        path = Path(tmp) / "fingerprint.safetensors"
        path.write_bytes(data)
        try:
            return load_fingerprint(path)
        except MalformedInput as exc:
            raise MalformedInput(f"{where}: {str(exc).removeprefix(str(path) + ': ')}") from None


@dataclass
class Entry:
    """One indexed model's metadata (the fingerprint itself is read with Store.fingerprint)."""
    id: int
    content_hash: str
    name: str
    role: str
    family: str | None
    format: str | None
    layers: int
    facts: dict
    source: str | None
    released: str | None
    fingerprinted_by: str | None
    backend: dict
    tool_version: str | None
    added_at: str
    origin_id: int
    fingerprint_sha256: str

    @classmethod
    def from_row(cls, row) -> "Entry":
        """An Entry from an entries row, JSON columns decoded.

        Args:
            row: the ENTRY_COLUMNS values, in order.
        Returns:
            The Entry.
        """
        d = dict(zip(ENTRY_COLUMNS, row))
        d["facts"], d["backend"] = json.loads(d["facts"]), json.loads(d["backend"])
        return cls(**d)

    def as_dict(self) -> dict:
        """The entry's metadata as a dict.

        Returns:
            Column name -> value.
        """
        return dict(self.__dict__)


class Store:
    """An open index database. Use as a context manager, or call close().

    Args:
        path: the SQLite file.
        create: make it when it does not exist (otherwise a missing file is InputNotFound).
    """

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise InputNotFound("no such index database", self.path)
        if self.path.exists() and not self.path.is_file():
            raise MalformedInput("index database is not a file", self.path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            self.conn.execute("PRAGMA trusted_schema = OFF")  # a shared file may carry hostile triggers or views
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = FULL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise MalformedInput(f"not a provenance index database ({exc})", self.path) from None

    # --- lifecycle ---
    def _init_schema(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            with self.transaction():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute("INSERT INTO schema_version(version) VALUES (?)", (STORE_VERSION,))
            return
        if "schema_version" not in tables:
            raise MalformedInput("not a provenance index database (no schema_version table)", self.path)
        rows = self.conn.execute("SELECT version FROM schema_version").fetchall()
        if len(rows) != 1 or not isinstance(rows[0][0], int):
            raise MalformedInput("index schema_version table must hold exactly one integer", self.path)
        if rows[0][0] != STORE_VERSION:
            raise Unsupported(f"index schema version {rows[0][0]}; this version reads {STORE_VERSION}", self.path)
        missing = {"origins", "entries"} - tables
        if missing:
            raise MalformedInput(f"index database lacks tables {sorted(missing)}", self.path)

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def transaction(self):
        """A context manager: BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

        Returns:
            The transaction context.
        """
        return _Transaction(self.conn)

    def integrity(self) -> list[str]:
        """SQLite's integrity check plus the store's own invariants.

        Returns:
            The problems found; [] when consistent.
        """
        problems = [r[0] for r in self.conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {r}" for r in self.conn.execute("PRAGMA foreign_key_check")]
        bad = self.conn.execute("SELECT name FROM entries WHERE length(summary) != ?", (4 * S.DIMENSION,)).fetchall()
        problems += [f"entry {r[0]!r}: summary of the wrong length" for r in bad]
        return problems

    # --- origins ---
    def origin(self, kind: str, identity: dict, source: str | None = None) -> int:
        """The id of an origin row with this identity, creating it in its own transaction when new.

        Args:
            kind: how the fingerprints came in ("local", "import", ...).
            identity: who produced the fingerprints (tool, version, person; an export's origin record).
            source: where they came from (an export file), or None.
        Returns:
            The origin's id.
        """
        text = json.dumps(identity, sort_keys=True)
        row = self.conn.execute("SELECT id FROM origins WHERE kind = ? AND identity = ? AND source IS ?",
                                (kind, text, source)).fetchone()
        if row:
            return row[0]
        if self.conn.in_transaction:
            return self._insert_origin(kind, text, source)
        with self.transaction():
            return self._insert_origin(kind, text, source)

    def _insert_origin(self, kind: str, text: str, source: str | None) -> int:
        return self.conn.execute("INSERT INTO origins(kind, identity, source, recorded_at) VALUES (?, ?, ?, ?)",
                                 (kind, text, source, utc_now())).lastrowid

    def origins(self) -> list[dict]:
        """Every origin row, oldest first.

        Returns:
            [{id, kind, identity, source, recorded_at}].
        """
        return [{"id": i, "kind": k, "identity": json.loads(ident), "source": src, "recorded_at": at}
                for i, k, ident, src, at in self.conn.execute(
                    "SELECT id, kind, identity, source, recorded_at FROM origins ORDER BY id")]

    # --- entries ---
    def hashes(self) -> set[str]:
        """The content hashes of every indexed model.

        Returns:
            A set of hex digests.
        """
        return {r[0] for r in self.conn.execute("SELECT content_hash FROM entries")}

    def __len__(self) -> int:
        return self.conn.execute("SELECT count(*) FROM entries").fetchone()[0]

    def add(self, fp, *, origin_id: int, role: str = "model", source: str | None = None, released: str | None = None,
            fingerprinted_by: str | None = None, name: str | None = None, data: bytes | None = None,
            added_at: str | None = None) -> bool:
        """Insert one fingerprint in its own transaction.

        Args:
            fp: the Fingerprint.
            origin_id: from Store.origin.
            role: 'base' (a declared base model) or 'model'.
            source, released, fingerprinted_by, name: metadata (name defaults to the fingerprint's label).
            data: the fingerprint's file bytes when already at hand (else serialized here).
            added_at: when it was first indexed (default: now; imports keep the exporter's).
        Returns:
            True when inserted, False when its content hash was already indexed (nothing changes).
        """
        with self.transaction():
            return self.insert(fp, origin_id=origin_id, role=role, source=source, released=released,
                               fingerprinted_by=fingerprinted_by, name=name, data=data, added_at=added_at)

    def insert(self, fp, *, origin_id: int, role: str = "model", source: str | None = None, released: str | None = None,
               fingerprinted_by: str | None = None, name: str | None = None, data: bytes | None = None,
               added_at: str | None = None, tool_version: str | None = None) -> bool:
        """As add, inside a transaction the caller holds (several inserts that must land together).

        Args:
            fp, origin_id, role, source, released, fingerprinted_by, name, data, added_at: as add.
            tool_version: the version that fingerprinted it (default: this one; imports keep the exporter's).
        Returns:
            True when inserted, False when its content hash was already indexed.
        Raises:
            ValueError: a role other than 'base' or 'model'.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        from .. import __version__
        model = fp.model()
        data = fingerprint_bytes(fp) if data is None else data
        vec = S.summarize(fp)
        values = (model["content_hash"], name or model.get("label") or model["content_hash"][:12], role, model.get("family"),
                  model.get("format"), fp.num_layers, json.dumps(model.get("facts", {}), sort_keys=True), source, released,
                  fingerprinted_by, json.dumps(fp.doc.get("backend", {}), sort_keys=True), tool_version or __version__,
                  added_at or utc_now(), origin_id, S.SUMMARY_VERSION, vec.astype("<f4").tobytes(),
                  hashlib.sha256(data).hexdigest(), data)
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO entries(content_hash, name, role, family, format, layers, facts, source, released, "
            "fingerprinted_by, backend, tool_version, added_at, origin_id, summary_version, summary, fingerprint_sha256, "
            "fingerprint) VALUES (" + ", ".join("?" * len(values)) + ")", values)
        return cur.rowcount == 1

    def _entry(self, row) -> Entry:
        """A row as an Entry; a row a hostile or damaged file filled with the wrong types is MalformedInput."""
        try:
            entry = Entry.from_row(row)
        except (ValueError, TypeError):
            raise MalformedInput(f"index entry {row[0]} has malformed metadata", self.path) from None
        if not isinstance(entry.facts, dict) or not isinstance(entry.backend, dict) or not isinstance(entry.name, str):
            raise MalformedInput(f"index entry {row[0]} has malformed metadata", self.path)
        return entry

    def entries(self) -> list[Entry]:
        """Every indexed model's metadata, in insertion order.

        Returns:
            Entries.
        Raises:
            MalformedInput: a row with malformed metadata.
        """
        cols = ", ".join(ENTRY_COLUMNS)
        return [self._entry(r) for r in self.conn.execute(f"SELECT {cols} FROM entries ORDER BY id")]

    def entry(self, content_hash: str) -> Entry | None:
        """One indexed model's metadata.

        Args:
            content_hash: the model's content hash.
        Returns:
            Its Entry, or None when not indexed.
        """
        cols = ", ".join(ENTRY_COLUMNS)
        row = self.conn.execute(f"SELECT {cols} FROM entries WHERE content_hash = ?", (content_hash,)).fetchone()
        return None if row is None else self._entry(row)

    def summaries(self) -> tuple[list[int], list[str], list[str], np.ndarray]:
        """Everything the pre-filter needs, in one query.

        Returns:
            (ids, content hashes, names, float32 [entries, DIMENSION] summary matrix).
        Raises:
            MalformedInput: a summary of the wrong size.
            Unsupported: a summary of another version (rebuild the index).
        """
        ids, hashes, names, blobs = [], [], [], []
        for i, h, n, v, blob in self.conn.execute("SELECT id, content_hash, name, summary_version, summary FROM entries ORDER BY id"):
            if not isinstance(blob, bytes) or len(blob) != 4 * S.DIMENSION:
                raise MalformedInput(f"index entry {n!r} has a malformed summary", self.path)
            if v != S.SUMMARY_VERSION:
                raise Unsupported(f"entry {n!r} has summary version {v}; rebuild the index with this version", self.path)
            ids.append(i), hashes.append(h), names.append(n), blobs.append(blob)
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), S.DIMENSION) if blobs else \
            np.zeros((0, S.DIMENSION), dtype=np.float32)
        return ids, hashes, names, matrix

    def fingerprint_data(self, content_hash: str) -> bytes:
        """The stored fingerprint file bytes of an indexed model, checked against their sha256.

        Args:
            content_hash: the model's content hash.
        Returns:
            The bytes.
        Raises:
            InputNotFound: no such entry.
            MalformedInput: the bytes do not match their recorded sha256.
        """
        row = self.conn.execute("SELECT fingerprint, fingerprint_sha256, name FROM entries WHERE content_hash = ?",
                                (content_hash,)).fetchone()
        if row is None:
            raise InputNotFound(f"no entry with content hash {content_hash}", self.path)
        if not isinstance(row[0], bytes) or hashlib.sha256(row[0]).hexdigest() != row[1]:
            raise MalformedInput(f"entry {row[2]!r}: stored fingerprint does not match its sha256", self.path)
        return row[0]

    def fingerprint(self, content_hash: str):
        """The validated Fingerprint of an indexed model.

        Args:
            content_hash: the model's content hash.
        Returns:
            The Fingerprint.
        """
        return fingerprint_from_bytes(self.fingerprint_data(content_hash), f"{self.path}: entry {content_hash[:12]}")


class _Transaction:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *rest):
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
