"""Comparison speed on fingerprints of 48-layer models (the stored sizes of a 48-layer, 5120-wide model).

Run: python -m pytest benchmarks/test_bench_compare.py --benchmark-only
The baseline in the same run is the sigma-curve statistic alone on the same fingerprints.
"""
import pytest

from provenance.lineage import compare_fingerprints
from provenance.lineage.signals import sigma_curve_correlations

from .synthetic import synthetic_fingerprint


@pytest.fixture(scope="module")
def pair48():
    a = synthetic_fingerprint(48, seed=1)
    return a, synthetic_fingerprint(48, seed=2, parent=a)


@pytest.mark.benchmark(group="compare-48-layers")
def test_compare_48_layer_fingerprints(benchmark, pair48):
    result = benchmark.pedantic(compare_fingerprints, args=pair48, rounds=5, iterations=1)
    assert result["verdict"] == "derived"
    assert benchmark.stats.stats.median < 1.0  # the target: well under a second


@pytest.mark.benchmark(group="compare-48-layers")
def test_sigma_curve_baseline_48_layers(benchmark, pair48):
    benchmark(sigma_curve_correlations, *pair48)
