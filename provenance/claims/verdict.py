"""The verdict from the checks, and the plain statement of what it does not prove."""
from __future__ import annotations

from .checks import Check

VERDICTS = ("consistent", "inconsistent", "insufficient-evidence")

NOT_PROVEN = (
    "Consistent is not proof. Final weights carry almost no trace of the hardware they were trained on; "
    "lineage rules out only the suspects that were named; reference outputs inside an envelope could have been "
    "computed on any platform with the same precision; a replayed segment shows that these k steps follow from "
    "their start under the recipe, not that the rest of training happened on the claimed platform, and "
    "tolerance-based replay can be spoofed by an adversary who forges a trajectory (Proof-of-Learning spoofing)."
)


def decide(checks: list[Check]) -> tuple[str, str]:
    """(verdict, one-paragraph statement).

    Any strong contradiction makes the claim inconsistent. Weak contradictions, or no test that
    could have failed and passed, leave the evidence insufficient. Otherwise consistent, never proof.

    Args:
        checks: every check run on the claim.
    Returns:
        (consistent, inconsistent or insufficient-evidence; the statement for people).
    """
    strong = [c for c in checks if c.result == "contradicts" and c.strength == "strong"]
    weak = [c for c in checks if c.result == "contradicts" and c.strength != "strong"]
    passed = [c for c in checks if c.kind == "test" and c.result == "supports"]
    if strong:
        return "inconsistent", "Contradicted by " + "; ".join(f"{c.name} ({c.strength}): {c.detail}" for c in strong)
    if weak:
        return "insufficient-evidence", ("Only weak evidence against the claim, which does not settle it: "
                                         + "; ".join(f"{c.name}: {c.detail}" for c in weak))
    if not passed:
        return "insufficient-evidence", ("No check that could have contradicted the claim ran and passed "
                                         "(give suspects, reference outputs or a training segment). " + NOT_PROVEN)
    return "consistent", f"Consistent with the claim on {len(passed)} test(s): " + ", ".join(c.name for c in passed) + ". " + NOT_PROVEN
