"""Direction of descent, only where the weights carry it structurally.

Weight statistics do not orient a lineage edge reliably; structure can. Each rule below names a
structural fact that only one direction explains, and is consulted only when the verdict found lineage.
"""
from __future__ import annotations

from ..anchors import token_rank

UNKNOWN = "direction is not determinable from weights"
MIN_EXTRA = 0.05  # a superset must add at least this share of tokens or neurons


def _moe(ctx):
    moe_a, moe_b = ctx.fa.is_moe(), ctx.fb.is_moe()
    if moe_a == moe_b:
        return None
    return ("b" if moe_a else "a",
            "the MoE's pooled experts match back onto the dense FFN: the dense model is the parent of the upcycled one")


def _pruned(ctx):
    counts = [(ctx.fa.layer_info(i).get("neurons", 0), ctx.fb.layer_info(j).get("neurons", 0)) for i, j in ctx.path]
    if not counts or any(min(a, b) == 0 for a, b in counts):
        return None
    if all(a >= b * (1 + MIN_EXTRA) for a, b in counts):
        return "a", "every mapped layer of B holds fewer MLP neurons than A's: B is a pruned child of A"
    if all(b >= a * (1 + MIN_EXTRA) for a, b in counts):
        return "b", "every mapped layer of A holds fewer MLP neurons than B's: A is a pruned child of B"
    return None


def _vocabulary(ctx):
    """Within the hash range both fingerprints cover, one model's embedding tokens strictly contain the other's:
    the model with the extended vocabulary is the child."""
    ea, eb = ctx.fa.embedding_tokens(), ctx.fb.embedding_tokens()
    if ea is None or eb is None or ea[1] != "token strings" or eb[1] != "token strings" or ea[0] == eb[0]:
        return None  # (the same token list: neither extends the other)
    limit = min(token_rank(ea[0][-1]), token_rank(eb[0][-1]))
    ta = {t for t in ea[0] if token_rank(t) <= limit}
    tb = {t for t in eb[0] if token_rank(t) <= limit}
    if tb < ta and len(ta - tb) >= MIN_EXTRA * len(ta):
        return "b", f"A's vocabulary extends B's ({len(ta - tb)} of {len(ta)} sampled tokens are new, none removed): A is the child"
    if ta < tb and len(tb - ta) >= MIN_EXTRA * len(tb):
        return "a", f"B's vocabulary extends A's ({len(tb - ta)} of {len(tb)} sampled tokens are new, none removed): B is the child"
    return None


RULES = (_moe, _pruned, _vocabulary)  # first rule that applies wins


def infer(ctx, verdict: str) -> dict:
    """{"parent": "a" | "b" | None, "evidence": why}, from structure only and only for a 'derived' verdict."""
    if verdict != "derived":
        return {"parent": None, "evidence": UNKNOWN + " (no lineage evidence)"}
    for rule in RULES:
        found = rule(ctx)
        if found:
            return {"parent": found[0], "evidence": found[1]}
    return {"parent": None, "evidence": UNKNOWN}
