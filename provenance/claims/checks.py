"""One check's result: what it found, whether that supports or contradicts the claim, and how strongly."""
from __future__ import annotations

from dataclasses import dataclass, field

RESULTS = ("supports", "contradicts", "neutral", "not-run")
STRENGTHS = ("strong", "weak", "none")
# kinds: an "audit" finding reads artifacts; a "test" recomputes something and could have failed
KINDS = ("audit", "test")


@dataclass
class Check:
    name: str
    result: str
    strength: str
    detail: str
    kind: str = "audit"
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        assert self.result in RESULTS and self.strength in STRENGTHS and self.kind in KINDS, self

    def to_json(self) -> dict:
        out = {"name": self.name, "result": self.result, "strength": self.strength, "detail": self.detail, "kind": self.kind}
        if self.data:
            out["data"] = self.data
        return out
