"""Reports for people, built from documents alone: generic over signals, readable p-values, drift tables."""
import copy
import re

import pytest

from provenance.report import drift as drift_report
from provenance.report import lineage
from provenance.report.render import format_p, to_html, to_markdown
from provenance.report.wording import p_value_note, p_with_null


def _signal(name, observed, null, p, min_effect=0.15, **extra):
    med = sorted(null)[len(null) // 2]
    return {"name": name, "statistic": sum(observed) / len(observed), "p_value": p, "used": True,
            "effect": sorted(observed)[len(observed) // 2] - med, "min_effect": min_effect,
            "null": f"{len(null)} non-corresponding pairs", "null_values": null, "observed": observed,
            "per_layer_p": [p] * len(observed), "note": "a test signal", **extra}


def _result(signals, matrices, verdict="derived", **extra):
    return {"verdict": verdict, "p_value": min((s["p_value"] for s in signals if s["p_value"] is not None), default=None),
            "reason": "a reason", "signals": signals, "layer_map": [[0, 0], [1, 1], [2, 2]], "shared_anchors": 200,
            "anchor_note": "", "decision_rule": {"alpha_derived": 1e-4, "alpha_independent": 0.01, "min_shared_anchors": 32},
            "a": {"label": "alpha", "family": "llama", "layers": 3}, "b": {"label": "beta", "family": "llama", "layers": 3},
            "matrices": matrices, **extra}


NULL = [0.40, 0.42, 0.45, 0.47, 0.50, 0.41]
MATRIX = [[0.95, 0.4, 0.42], [0.45, 0.97, 0.47], [0.5, 0.41, 0.96]]


def test_a_new_signal_gets_its_figure_and_row_without_code_changes():
    sigma = {"name": "sigma_curves", "statistic": 0.7, "p_value": None, "used": False, "null": "none", "note": "reference",
             "curves": {"a": {"attn.q": [1.0, 2.0, 3.0]}, "b": {"attn.q": [1.1, 2.2, 2.9]}}}
    signals = [sigma, _signal("attention_cka", [0.95, 0.97, 0.96], NULL, 1e-30),
               _signal("dense_moe_match", [0.9, 0.88, 0.91], NULL, 1e-8),
               _signal("embedding_overlap", [0.7, 0.75, 0.8], NULL, 2e-3, min_effect=0.2)]  # not known to the report
    result = _result(signals, {"attention_cka": MATRIX, "mlp": MATRIX},
                     direction={"parent": "a", "evidence": "B's norms drifted further from initialisation"})
    sections = lineage.comparison_sections(result)  # no fingerprints: sigma-curves come from the signal's record
    figures = {f.name: f for s in sections for f in s.figures}
    assert {"signal_attention_cka", "signal_dense_moe_match", "signal_embedding_overlap", "sigma_curves"} <= set(figures)
    assert all(f.png.startswith(b"\x89PNG") and f.alt for f in figures.values())
    assert lineage._matrix(result, "dense_moe_match") is not None      # the neuron signal reads the "mlp" matrix
    assert lineage._matrix(result, "embedding_overlap") is None        # no matrix: its histogram alone
    md = to_markdown("t", sections)
    assert "| embedding_overlap |" in md and "< 1e-12 (null of 6)" in md
    assert "A looks like the parent" in md and "norms drifted" in md
    summary = sections[0]
    assert summary.lead and "Verdict: derived" in summary.text and "never proof" in summary.text


@pytest.mark.parametrize("verdict, phrase", [("derived", "never proof"), ("independent", "not proof of independence"),
                                             ("inconclusive", "does not guess")])
def test_every_verdict_says_what_it_does_not_mean(verdict, phrase):
    result = _result([_signal("attention_cka", [0.5, 0.5, 0.5], NULL, 0.5)], {}, verdict=verdict)
    assert phrase in lineage.summary_section(result).text


def test_uncalibrated_signals_get_no_null_figure():
    signals = [{"name": "norm_vectors", "statistic": 0.2, "p_value": None, "used": False, "null": "none", "note": "n"},
               _signal("attention_cka", [0.5, 0.52, 0.48], NULL, 0.4)]
    sections = lineage.comparison_sections(_result(signals, {"attention_cka": [[None, 0.5, 0.4]] * 3}, verdict="independent"))
    names = [f.name for s in sections for f in s.figures]
    assert names == ["signal_attention_cka"]


def test_p_values_read_as_orders_of_magnitude_beside_the_null_size():
    assert format_p(2.45e-50) == "< 1e-12"
    assert format_p(5.02e-6) == "5.0e-06"
    assert format_p(0.0312) == "0.031"
    assert format_p(1.0) == "1"
    assert format_p(None) == "n/a"
    assert p_with_null(2.45e-50, 12) == "< 1e-12 (null of 12)"
    note = p_value_note(12)
    assert "12" in note and "1 in 13" in note and "extrapolation" in note


def _drift_rows():
    rows = []
    for det in (False, True):
        for k, err in (("gram", 2.8e-5), ("block_forward", 8e-5)):
            rows.append({"kernel": k, "backend": "cpu", "dtype": "fp32", "mode": "ieee", "deterministic_algorithms": det,
                         "emulated": False, "max_rel_err": err, "median_rel_err": err / 100, "max_ulp": 400.0,
                         "cosine": 1.0, "deterministic": True, "slice_invariant": None, "time_ms": 0.1})
    rows.append({**rows[0], "dtype": "fp16", "max_rel_err": None, "median_rel_err": None})
    rows.append({**rows[0], "backend": "cpu-emulated-tf32", "mode": "tf32", "emulated": True, "max_rel_err": 3e-4})
    return rows


def _drift_report():
    return {"rows": _drift_rows(), "verdicts": [
        {"pair": ["a", "b"], "verdict": "derived", "stable": True, "flipped_in": [], "margin_to_drift": 300.0,
         "drift_at_floor": False, "max_effect_drift": 1e-4, "max_log10_p_drift": 0.02}]}


def test_drift_report_summarises_each_kernel_once_and_folds_the_full_table():
    report = _drift_report()
    headers, rows = drift_report.kernel_summary(report)
    assert headers == ["kernel", "worst fp32", "worst fp16", "worst emulated mode", "bitwise repeatable", "slice invariant"]
    assert [r[0] for r in rows] == ["gram", "block_forward"]
    assert rows[0][2] == "overflow" and rows[1][2] == "n/a" and rows[0][3].endswith("(tf32)")
    sections = [drift_report.drift_summary_section(report)] + drift_report.drift_sections(report)
    html = to_html("t", sections)
    assert "<details><summary>every configuration (6 rows" in html
    assert "all 1 verdicts" in sections[0].text and "300 times" in sections[0].text


def _comparison(second_rows):
    from provenance.drift.compare import compare_reports
    base = {"schema_version": "1.0", "inputs": {"models": [{"content_hash": "x"}], "kernel_inputs_sha256": "y"},
            "rows": _drift_rows()[:4], "verdicts": [{"pair": ["a", "b"], "verdict": "derived", "margin_to_drift": 1.0,
                                                     "verdicts_by_config": {"cpu/fp32/ieee": "derived"}}]}
    other = copy.deepcopy(base)
    other["rows"] = second_rows
    return compare_reports([base, other], ["ref/one.json", "new/two.json"])


def test_drift_compare_merges_deterministic_rows_that_measured_the_same():
    result = _comparison(_drift_rows()[:4])
    assert len(result["rows"]) == 4
    merged = drift_report.merged_rows(result)
    assert len(merged) == 2 and all(r["det"] == "off and on (same result)" for r in merged)
    md = to_markdown("t", drift_report.comparison_sections(result))
    assert "{'pass'" not in md and "Result: pass" in md
    assert "one.json" in md and "ref/one.json" not in md  # short names when they are distinct


def test_drift_compare_keeps_deterministic_rows_apart_when_they_differ():
    rows = _drift_rows()[:4]
    rows[3] = {**rows[3], "max_rel_err": rows[3]["max_rel_err"] * 3}  # block_forward, deterministic on: fails
    result = _comparison(rows)
    merged = drift_report.merged_rows(result)
    labels = sorted((r["kernel"], r["det"], r["status"]) for r in merged)
    assert labels == [("block_forward", "off", "pass"), ("block_forward", "on", "fail"),
                      ("gram", "off and on (same result)", "pass")]
    sections = drift_report.comparison_sections(result)
    assert sections[0].lead and "Result: fail" in sections[0].text
    assert [f.name for s in sections for f in s.figures] == ["drift_ratios"]
    assert re.search(r"\| block_forward \| fp32 \| ieee \| on \|.*\| fail \|", to_markdown("t", sections))


def test_text_links_are_relative_paths_only():
    from provenance.report.render import Section
    hostile = "[click](javascript:alert(1)) [abs](/etc/passwd) [pair](comparisons/a__b/report.{ext}) [up](../../report.{ext})"
    html = to_html("t", [Section("s", hostile)])
    assert "href='javascript" not in html and "href='/" not in html
    assert "<a href='comparisons/a__b/report.html'>pair</a>" in html and "<a href='../../report.html'>up</a>" in html
