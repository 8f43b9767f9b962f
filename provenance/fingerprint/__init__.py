"""Fingerprints: the streaming pass (compute.py) and the record it writes (record.py)."""
from ..progress import Progress  # noqa: F401 (the pass reports through it; tests patch it here)
from .compute import MAX_NEURONS, N_ANCHORS, fingerprint_model, fingerprint_view
from .record import METADATA_KEY, SIGMA_ROLES, Fingerprint, is_fingerprint_file, load_fingerprint

__all__ = ["MAX_NEURONS", "METADATA_KEY", "N_ANCHORS", "SIGMA_ROLES", "Fingerprint", "fingerprint_model", "fingerprint_view",
           "is_fingerprint_file", "load_fingerprint"]
