"""Comparison speed on fingerprints of 48-layer models (the stored sizes of a 48-layer, 5120-wide model).

Run: python -m pytest benchmarks/test_bench_compare.py --benchmark-only
Baselines in the same run, on the same fingerprints: the anchor-token signals alone (the engine before
the body and embedding signals) and the sigma-curve statistic alone. The target is well under a second
for the full compare on an unloaded machine; the benchmark reports times, it does not assert them.
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


ANCHOR_SIGNALS = ("sigma_curves", "attention_cka", "neuron_match", "depth_alignment", "norm_vectors")


@pytest.mark.benchmark(group="compare-48-layers")
def test_anchor_signals_only_baseline_48_layers(benchmark, pair48):
    result = benchmark.pedantic(compare_fingerprints, args=pair48, kwargs={"signals": ANCHOR_SIGNALS}, rounds=5, iterations=1)
    assert result["verdict"] == "derived"


@pytest.mark.benchmark(group="compare-48-layers")
def test_sigma_curve_baseline_48_layers(benchmark, pair48):
    benchmark(sigma_curve_correlations, *pair48)
