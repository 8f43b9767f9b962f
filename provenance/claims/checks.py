"""One check's result: what it found, whether that supports or contradicts the claim, and how strongly."""
from __future__ import annotations

from dataclasses import dataclass, field

RESULTS = ("supports", "contradicts", "neutral", "not-run")
STRENGTHS = ("strong", "weak", "none")
# kinds: an "audit" finding reads artifacts; a "test" recomputes something and could have failed
KINDS = ("audit", "test")


@dataclass
class Check:
    """One piece of evidence about a claim.

    Attributes:
        name: what was checked ("audit.config", "replay", ...).
        result: supports, contradicts or neutral.
        strength: strong, weak or none.
        detail: one sentence for people.
        kind: audit (what the files say) or test (a computation that could have failed).
        data: measured numbers, for the JSON and the report.
    """

    name: str
    result: str
    strength: str
    detail: str
    kind: str = "audit"
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        assert self.result in RESULTS and self.strength in STRENGTHS and self.kind in KINDS, self

    def to_json(self) -> dict:
        """The check as the claim document lists it.

        Returns:
            name, result, strength, detail, kind (and data when there is any).
        """
        out = {"name": self.name, "result": self.result, "strength": self.strength, "detail": self.detail, "kind": self.kind}
        if self.data:
            out["data"] = self.data
        return out
