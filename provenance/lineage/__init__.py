"""Lineage: was B derived from A? Signals, their nulls, and a verdict that abstains."""
from .verdict import DECISION, compare_fingerprints

__all__ = ["DECISION", "compare_fingerprints"]
