"""Hardware drift: the same kernels on every backend, against a float64 golden run."""
from .compare import compare_reports
from .run import KERNELS, check_determinism, run_drift

__all__ = ["KERNELS", "check_determinism", "compare_reports", "run_drift"]
