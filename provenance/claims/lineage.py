"""Lineage against the claim: the lineage engine run on the model and every suspect.

For a from-scratch claim a `derived` verdict against any suspect contradicts it (strong: the
engine's p-value is calibrated); `independent` rules out only the suspects that were named.
For a derived-from claim the named parent must come out `derived`.
Only the engine's verdict, p_value, reason and (if present) direction are read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .checks import Check
from .claimfile import Claim


def _fingerprint(path: Path, backend, label: str):
    from ..fingerprint import fingerprint_model, is_fingerprint_file, load_fingerprint
    if is_fingerprint_file(path):
        return load_fingerprint(path)
    return fingerprint_model(path, backend, label=label)


def _is_parent(claim: Claim, suspect: dict) -> bool:
    parent = (claim.claim.get("parent") or "").strip()
    return bool(parent) and parent in (suspect.get("label"), suspect["path"].name, str(suspect["path"]))


# (claimed relation, engine verdict) -> (result, strength, what it means)
OUTCOMES = {
    ("unrelated", "derived"): ("contradicts", "strong", "the model is derived from this suspect"),
    ("unrelated", "independent"): ("supports", "weak", "not derived from this suspect (other models were not tested)"),
    ("unrelated", "inconclusive"): ("neutral", "none", "the lineage engine abstained"),
    ("parent", "derived"): ("supports", "strong", "derived from the named parent, as claimed"),
    ("parent", "independent"): ("contradicts", "strong", "not derived from the parent the claim names"),
    ("parent", "inconclusive"): ("neutral", "none", "the lineage engine abstained"),
}


def check_lineage(claim: Claim, backend, progress: Callable[[str], None] | None = None) -> list[Check]:
    """One Check per suspect.

    Args:
        claim: a parsed claim with its suspects.
        backend: the backend that fingerprints checkpoints given as directories or files.
        progress: called with a short line before each fingerprint.
    Returns:
        Checks of kind "test", named lineage:<suspect label>.
    """
    from ..lineage import compare_fingerprints
    if not claim.suspects:
        return [Check("lineage", "not-run", "none", "the claim names no suspects", kind="test")]
    if progress:
        progress(f"fingerprinting {claim.label}")
    fm = _fingerprint(claim.model["path"], backend, claim.label)
    out = []
    for s in claim.suspects:
        label = s.get("label") or s["path"].name
        if progress:
            progress(f"lineage against {label}")
        result = compare_fingerprints(_fingerprint(s["path"], backend, label), fm)
        relation = "parent" if _is_parent(claim, s) else "unrelated"
        verdict = result["verdict"]
        outcome, strength, meaning = OUTCOMES.get((relation, verdict), ("neutral", "none", f"engine verdict {verdict!r}"))
        p = result.get("p_value")
        detail = f"{verdict} (p = {'n/a' if p is None else f'{p:.3g}'}): {meaning}; {result.get('reason', '')}".strip("; ")
        data = {"suspect": label, "relation": relation, "verdict": verdict, "p_value": p}
        if result.get("direction") is not None:
            data["direction"] = result["direction"]
        out.append(Check(f"lineage:{label}", outcome, strength, detail, kind="test", data=data))
    return out
