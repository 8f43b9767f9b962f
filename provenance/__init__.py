"""provenance: a hardware-aware training-provenance verifier for large language models."""
import os

# Installed device extensions (torch_npu) are imported by provenance.backends.npu on purpose, never
# autoloaded by `import torch`, so a broken one is a reason in a report, not a crash.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

__version__ = "0.1.0"
# The name on the package index; the import package and the command are both `provenance`.
__distribution__ = "provenance-verifier"
