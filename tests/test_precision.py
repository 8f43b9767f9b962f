"""The precision table and the backend registry: an unknown row is an error naming it, and a backend
added by registering one adapter runs drift and drift compare without any other change."""
import copy

import pytest
import torch

from provenance.backends import CpuBackend, backend_rank, get_backend, register_backend, unregister_backend
from provenance.drift import compare_reports, run_drift
from provenance.errors import BackendUnavailable, IncompatibleInputs, Unsupported
from provenance.precision import (DTYPES, EMULATIONS, MissingPrecisionRow, dtype_row, dtype_row_of, emulation,
                                  measured_dtypes, mode_class, mode_flags, mode_row)


class DummyBackend(CpuBackend):
    """A second host backend under a new name, ranked above every shipped one."""

    name = "dummy-host"
    rank = 99


class NewDeviceBackend(CpuBackend):
    """A backend whose device type has no row in the precision table."""

    name = "dummy-newdevice"
    device_type = "newdevice"
    rank = 98


@pytest.fixture
def registered():
    register_backend(DummyBackend)
    register_backend(NewDeviceBackend)
    yield
    unregister_backend(DummyBackend.name)
    unregister_backend(NewDeviceBackend.name)


def test_dtype_rows_hold_the_figures_drift_reports_were_made_with():
    assert [r.name for r in DTYPES if r.measured] == list(measured_dtypes()) == ["fp32", "bf16", "fp16"]
    assert {r.name: r.floor for r in DTYPES if r.measured} == {"fp32": 2.0 ** -24, "bf16": 2.0 ** -8, "fp16": 2.0 ** -11}
    assert {r.torch_dtype: r.mantissa_bits for r in DTYPES} == {torch.float64: 52, torch.float32: 23,
                                                                 torch.bfloat16: 7, torch.float16: 10}
    for row in DTYPES:  # the table's bits are the format's own
        assert 2.0 ** -row.mantissa_bits == torch.finfo(row.torch_dtype).eps
        assert dtype_row(row.torch_name) is row is dtype_row_of(row.torch_dtype)
    assert {e.mode: e.mantissa_bits for e in EMULATIONS} == {"tf32": 10, "hf32": 11, "bf16-inputs": 7,
                                                             "fp16-inputs": 10, "reordered": None}
    assert emulation("fp16-inputs").clamp == 65504
    assert mode_class("tf32") == mode_class("hf32") != mode_class("ieee")
    assert mode_class("bf16-inputs") == "bf16-inputs"  # an emulated mode is its own class


@pytest.mark.parametrize("lookup, name, table", [
    (dtype_row, "fp8", "dtype"), (mode_row, "fp8-fast", "precision mode"), (emulation, "int4-inputs", "emulation")])
def test_an_unknown_row_is_an_error_naming_it(lookup, name, table):
    with pytest.raises(MissingPrecisionRow, match=f"no {table} row '{name}' in provenance/precision.py") as info:
        lookup(name)
    assert isinstance(info.value, Unsupported)
    with pytest.raises(MissingPrecisionRow, match="float8"):
        dtype_row_of(torch.float8_e4m3fn)


def test_a_mode_missing_for_a_device_type_names_both(registered):
    with pytest.raises(MissingPrecisionRow, match="'hf32' does not exist on device type 'cuda'"):
        mode_flags("hf32", "cuda")
    backend = get_backend(NewDeviceBackend.name)
    with pytest.raises(MissingPrecisionRow, match="device type 'newdevice'"):
        backend.modes()
    with pytest.raises(MissingPrecisionRow, match="'ieee' does not exist on device type 'newdevice'"):
        with backend.precision("ieee"):
            pass


def test_an_unknown_backend_is_an_error_naming_it(registered):
    with pytest.raises(BackendUnavailable, match="no backend row 'mps'"):
        backend_rank("mps")
    with pytest.raises(BackendUnavailable, match="unknown backend 'mps'"):
        get_backend("mps")
    with pytest.raises(ValueError, match="already registered"):
        register_backend(type("Other", (CpuBackend,), {"name": "cpu"}))


@pytest.fixture(scope="module")
def dummy_report(zoo):
    register_backend(DummyBackend)
    try:
        return run_drift([str(zoo("base-s0"))], ["base-s0"], ["cpu", DummyBackend.name], ["fp32"], progress=False)
    finally:
        unregister_backend(DummyBackend.name)


def test_a_registered_backend_is_measured_by_drift(dummy_report):
    dummy = [r for r in dummy_report["rows"] if r["backend"] == DummyBackend.name]
    cpu = [r for r in dummy_report["rows"] if r["backend"] == "cpu"]
    assert dummy and {r["mode"] for r in dummy} == {"ieee"} and not any(r["emulated"] for r in dummy)
    assert dummy_report["identity"][DummyBackend.name]["backend"] == DummyBackend.name
    # the same CPU kernels under another name: the same errors
    errs = {(r["kernel"], r["deterministic_algorithms"]): r["max_rel_err"] for r in cpu if not r["emulated"]}
    assert {(r["kernel"], r["deterministic_algorithms"]): r["max_rel_err"] for r in dummy} == errs


def test_drift_compare_ranks_a_registered_backend_by_its_own_rank(dummy_report, registered):
    cpu_only = copy.deepcopy(dummy_report)
    cpu_only["rows"] = [r for r in cpu_only["rows"] if r["backend"] != DummyBackend.name]
    del cpu_only["identity"][DummyBackend.name]
    result = compare_reports([cpu_only, dummy_report], ["here-cpu", "here-dummy"])
    assert result["reference_backend"] == "cpu"
    assert result["rows"] and {r["backend"] for r in result["rows"]} == {DummyBackend.name}
    assert result["status"] == "pass" and all(r["ratio"] == 1.0 for r in result["rows"])
    reverse = compare_reports([dummy_report, cpu_only], ["here-dummy", "here-cpu"])
    assert reverse["reference_backend"] == DummyBackend.name
    assert {r["backend"] for r in reverse["rows"]} == {"cpu"}


def test_drift_compare_refuses_a_report_from_a_backend_it_cannot_rank(dummy_report):
    # DummyBackend is unregistered here: its rows cannot be ranked against the CPU's
    with pytest.raises(IncompatibleInputs, match=f"here-dummy.*no backend row '{DummyBackend.name}'"):
        compare_reports([dummy_report, dummy_report], ["here-dummy", "here-dummy"])


def test_drift_compare_names_the_report_whose_dtype_has_no_row(dummy_report):
    cpu_only = copy.deepcopy(dummy_report)
    cpu_only["rows"] = [r for r in cpu_only["rows"] if r["backend"] != DummyBackend.name]
    odd = copy.deepcopy(cpu_only)
    for report in (cpu_only, odd):
        for r in report["rows"]:
            r["dtype"] = "fp8"
    with pytest.raises(MissingPrecisionRow, match="^odd.json: no dtype row 'fp8' in provenance/precision.py"):
        compare_reports([cpu_only, odd], ["ref.json", "odd.json"])
