"""The fingerprint and lineage kernels on every available backend, fp32, on real zoo weights.

Run: python -m pytest benchmarks/test_bench_kernels.py --benchmark-only
Each kernel's float64 CPU run (the drift golden) is benchmarked in the same session as its baseline:
compare a kernel's fp32 time with its float64 time, never an absolute time across machines.
"""
import pytest
import torch

from provenance.backends import available_backends
from provenance.drift.kernels_table import KERNELS, kernel_inputs
from provenance.model import open_model
from provenance.zoo import build

BACKENDS = {b.name: b for b in available_backends()}
# The kernels run on one zoo layer (small matrices): one thread is fastest and keeps a shared 2-core machine
# from oversubscribing; fp32 and its float64 baseline run on the same count, so their ratio is fair.



@pytest.fixture(scope="module")
def inputs():
    return kernel_inputs(open_model(build("base-s0")), open_model(build("base-s1")))


def _placed(inputs, backend, dtype):
    return {k: backend.place(v, dtype) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("backend_name", list(BACKENDS))
def test_kernel_fp32(benchmark, inputs, kernel, backend_name):
    backend = BACKENDS[backend_name]
    placed = _placed(inputs, backend, torch.float32)
    fn = KERNELS[kernel].fn

    def run():
        out = fn(placed)
        backend.synchronize()
        return out
    benchmark.group = f"kernel-{kernel}"
    out = benchmark(run)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_kernel_float64_golden_baseline(benchmark, inputs, kernel):
    benchmark.group = f"kernel-{kernel}"
    benchmark(KERNELS[kernel].fn, inputs)
