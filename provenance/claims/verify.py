"""`claim verify`: every check the claim's artifacts allow, and the verdict."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..schemas import SCHEMA_VERSIONS, tool_record
from ..backends import get_backend
from .audit import run_audit
from .checks import Check
from .claimfile import Claim, parse_claim
from .lineage import check_lineage
from .verdict import decide



def claim_inputs(claim: Claim) -> list[Path]:
    """The checkpoints a claim names: no output may be written over them or inside their model directories.

    Args:
        claim: a parsed claim.
    Returns:
        The model, every suspect parent and the training segment's start and end, as paths.
    """
    inputs = [claim.model["path"]] + [s["path"] for s in claim.suspects]
    if claim.segment:
        inputs += [claim.segment["start"], claim.segment["end"]]
    return inputs


def verify_claim(path: str | Path, backend_name: str = "cpu", progress: Callable[[str], None] | None = None,
                 claim: Claim | None = None) -> dict:
    """Run the artifact audit, lineage, reference outputs and segment replay a claim allows.

    Args:
        path: the claim TOML file.
        backend_name: backend for fingerprinting (cpu, cuda, npu).
        progress: called with a short line per stage.
        claim: an already parsed claim (skips parsing `path` again).
    Returns:
        The claim document: {schema_version, verdict, statement, claim, checks, backend, timings_s}.
    """
    claim = claim or parse_claim(path)
    say = progress or (lambda _line: None)
    backend = get_backend(backend_name)
    timings = {}
    t = time.perf_counter()
    say("artifact audit")
    checks: list[Check] = run_audit(claim)
    timings["audit"] = time.perf_counter() - t
    t = time.perf_counter()
    checks += check_lineage(claim, backend, say)
    timings["lineage"] = time.perf_counter() - t
    if claim.reference_outputs:
        from .reference import check_reference
        say("recomputing reference outputs")
        t = time.perf_counter()
        ref = claim.reference_outputs
        checks.append(check_reference(claim.model["path"], ref["file"], ref["mode"], ref.get("drift_reports")))
        timings["reference_outputs"] = time.perf_counter() - t
    if claim.segment:
        from .replay import check_replay
        t = time.perf_counter()
        checks.append(check_replay(claim.segment, claim.claim.get("dtype") or "fp32", say))
        timings["replay"] = time.perf_counter() - t
    verdict, statement = decide(checks)
    return {
        "schema_version": SCHEMA_VERSIONS["claim"], "tool": tool_record(), "verdict": verdict, "statement": statement,
        "claim": {"file": str(claim.source), "model": str(claim.model["path"]), "label": claim.label,
                  **{k: claim.claim.get(k, "") for k in ("origin", "parent", "vendor", "chip", "framework", "dtype")}},
        "checks": [c.to_json() for c in checks],
        "backend": backend.identity(),
        "timings_s": timings,
    }
