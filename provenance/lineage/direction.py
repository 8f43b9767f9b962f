"""Direction of descent, only where the weights carry it structurally."""
from __future__ import annotations

UNKNOWN = "direction is not determinable from weights"


def infer(ctx, signals) -> dict:
    """{"parent": "a" | "b" | None, "evidence": why}. Structural cases only: an upcycled MoE's experts map
    back onto one dense FFN (the dense model is the parent); otherwise undetermined."""
    derived_evidence = any(s.get("used") and s.get("p_value") is not None and s.get("effect") is not None
                           and s["effect"] >= (s.get("min_effect") or 0) for s in signals)
    if not derived_evidence:
        return {"parent": None, "evidence": UNKNOWN + " (no lineage evidence)"}
    moe_a, moe_b = ctx.fa.is_moe(), ctx.fb.is_moe()
    if moe_a != moe_b:
        parent = "b" if moe_a else "a"
        return {"parent": parent, "evidence": "the MoE's pooled experts match back onto the dense FFN: "
                                              "the dense model is the parent of the upcycled one"}
    return {"parent": None, "evidence": UNKNOWN}
