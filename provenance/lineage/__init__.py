"""Lineage: was B derived from A? Signals, their nulls, and a verdict that abstains."""
from .rule import decide, margins
from .signals import SIGNALS, Signal, register, unregister
from .verdict import compare_fingerprints, decision_rule

DECISION = decision_rule()  # thresholds with every calibrated signal's effect margin (a snapshot, for reports)

__all__ = ["DECISION", "SIGNALS", "Signal", "compare_fingerprints", "decide", "decision_rule", "margins", "register",
           "unregister"]
