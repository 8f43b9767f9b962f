"""The claim file: a TOML document naming a model, what its vendor claims, and the artifacts to check.

The key names are an interchange format. Every section and key is listed in SCHEMA; anything
else is an error that names it, so a typo never passes silently. Paths resolve against the
claim file's folder and may not leave it (no `..`, no absolute paths, no symlinks pointing out).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputNotFound, MalformedInput, UnsafeInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MAX_CLAIM_BYTES = 1 << 20  # a claim is a few hundred bytes; a huge one is hostile


@dataclass(frozen=True)
class Key:
    """What one key of the claim file accepts.

    Attributes:
        kind: its Python type after TOML parsing.
        required: the claim is malformed without it.
        path: a path resolved against the claim folder and confined to it.
        choices: the values allowed (empty: any).
    """

    kind: type
    required: bool = False
    path: bool = False       # resolved against the claim folder and confined to it
    choices: tuple = ()


ORIGINS = ("from-scratch", "derived-from")
# claimed training precision -> the replay/reference modes its envelope is made of (see envelope tables)
DTYPES = ("fp32", "tf32", "hf32", "bf16", "fp16")

# section -> key -> Key. `suspects` is an array of tables; the others are tables.
SCHEMA: dict[str, dict[str, Key]] = {
    "model": {"path": Key(str, True, True), "label": Key(str)},
    "claim": {"origin": Key(str, True, choices=ORIGINS), "parent": Key(str), "vendor": Key(str), "chip": Key(str),
              "framework": Key(str), "dtype": Key(str, choices=DTYPES)},
    "suspects": {"path": Key(str, True, True), "label": Key(str)},
    "reference_outputs": {"file": Key(str, True, True), "mode": Key(str, True, choices=DTYPES),
                          "drift_reports": Key(list, path=True)},
    "segment": {"start": Key(str, True, True), "optimizer": Key(str, True, True), "batches": Key(str, True, True),
                "recipe": Key(str, True, True), "end": Key(str, True, True)},
}
REQUIRED_SECTIONS = ("model", "claim")
ARRAY_SECTIONS = ("suspects",)


@dataclass
class Claim:
    """A parsed claim; every path is absolute, resolved and inside `folder`."""
    source: Path
    folder: Path
    model: dict
    claim: dict
    suspects: list[dict] = field(default_factory=list)
    reference_outputs: dict | None = None
    segment: dict | None = None

    @property
    def label(self) -> str:
        """The model's label: its own, else the name of its path."""
        return self.model.get("label") or self.model["path"].name


def confined_path(folder: Path, relative: str, where: str, source: Path) -> Path:
    """`relative` resolved under the claim folder.

    Args:
        folder: the claim file's folder.
        relative: the path as the claim writes it.
        where: the key it came from, for messages.
        source: the claim file, for messages.
    Returns:
        The resolved path.
    Raises:
        UnsafeInput: an absolute path, or one that leaves the folder.
        InputNotFound: it does not exist.
    """
    if not relative or os.path.isabs(relative) or "\x00" in relative or relative.startswith("~"):
        raise UnsafeInput(f"{where} = {relative!r} is not a relative path inside the claim folder", source)
    resolved = (folder / relative).resolve()
    root = folder.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafeInput(f"{where} = {relative!r} resolves outside the claim folder {root}", source)
    if not resolved.exists():
        raise InputNotFound(f"{where} = {relative!r}: no such file or directory in the claim folder", source)
    return resolved


def _table(section: str, value, source: Path, folder: Path, where: str) -> dict:
    if not isinstance(value, dict):
        raise MalformedInput(f"[{where}] must be a table, not {type(value).__name__}", source)
    schema = SCHEMA[section]
    out = {}
    for key, v in value.items():
        spec = schema.get(key)
        if spec is None:
            raise MalformedInput(f"unknown key {where}.{key} (known keys of [{section}]: {', '.join(schema)})", source)
        if not isinstance(v, spec.kind):
            raise MalformedInput(f"{where}.{key} must be a {spec.kind.__name__}, not {type(v).__name__}", source)
        if spec.choices and v not in spec.choices and not (v == "" and not spec.required):
            raise MalformedInput(f"{where}.{key} = {v!r} is not one of {', '.join(spec.choices)}", source)
        if spec.path and isinstance(v, list):
            if not all(isinstance(item, str) for item in v):
                raise MalformedInput(f"{where}.{key} must be a list of paths", source)
            out[key] = [confined_path(folder, item, f"{where}.{key}[{i}]", source) for i, item in enumerate(v)]
        else:
            out[key] = confined_path(folder, v, f"{where}.{key}", source) if spec.path else v
    missing = [k for k, spec in schema.items() if spec.required and k not in out]
    if missing:
        raise MalformedInput(f"[{where}] lacks the required key {missing[0]}", source)
    return out


def parse_claim(path: str | Path) -> Claim:
    """Read and validate a claim file.

    Args:
        path: the claim TOML file.
    Returns:
        A Claim with every path resolved inside the claim's folder and checked to exist.
    Raises:
        InputNotFound, MalformedInput (bad TOML, unknown or missing keys, wrong types), UnsafeInput (paths leaving the folder).
    """
    source = Path(path)
    if not source.is_file():
        raise InputNotFound("no such claim file", source)
    size = source.stat().st_size
    if size > MAX_CLAIM_BYTES:
        raise MalformedInput(f"claim file is {size} bytes, larger than the {MAX_CLAIM_BYTES} allowed", source)
    try:
        doc = tomllib.loads(source.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MalformedInput(f"invalid TOML ({exc})", source) from None
    folder = source.resolve().parent
    for section in doc:
        if section not in SCHEMA:
            raise MalformedInput(f"unknown section or key {section!r} (known: {', '.join(SCHEMA)})", source)
    for section in REQUIRED_SECTIONS:
        if section not in doc:
            raise MalformedInput(f"the claim lacks its [{section}] section", source)
    suspects = doc.get("suspects", [])
    if not isinstance(suspects, list):
        raise MalformedInput("suspects must be an array of tables ([[suspects]])", source)
    claim = Claim(
        source=source, folder=folder,
        model=_table("model", doc["model"], source, folder, "model"),
        claim=_table("claim", doc["claim"], source, folder, "claim"),
        suspects=[_table("suspects", s, source, folder, f"suspects[{i}]") for i, s in enumerate(suspects)],
        reference_outputs=(_table("reference_outputs", doc["reference_outputs"], source, folder, "reference_outputs")
                           if "reference_outputs" in doc else None),
        segment=_table("segment", doc["segment"], source, folder, "segment") if "segment" in doc else None,
    )
    if claim.claim["origin"] == "derived-from" and not claim.claim.get("parent"):
        raise MalformedInput("claim.origin = \"derived-from\" needs claim.parent, the named parent", source)
    return claim


def finite_number(value, where: str, source: Path, *, minimum: float | None = None) -> float:
    """A finite float (bools refused), optionally at least `minimum`.

    Args:
        value: the parsed TOML value.
        where: the key it came from, for messages.
        source: the claim file, for messages.
        minimum: the smallest value allowed, or None.
    Returns:
        The value as a float.
    Raises:
        MalformedInput: not a finite number, or below `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MalformedInput(f"{where} must be a finite number, not {value!r}", source)
    if minimum is not None and value < minimum:
        raise MalformedInput(f"{where} = {value} is below {minimum}", source)
    return float(value)
