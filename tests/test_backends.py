import sys

import pytest
import torch

from provenance import backends
from provenance.backends import BACKENDS, get_backend
from provenance.backends.npu import NpuBackend, import_torch_npu
from provenance.errors import BackendUnavailable
from provenance.precision import MODES, MissingPrecisionRow


def test_cpu_is_available_with_a_full_identity_record():
    cpu = get_backend("cpu")
    ident = cpu.identity()
    for key in ("backend", "device", "device_name", "torch", "python", "flags"):
        assert key in ident
    for flag in ("float32_matmul_precision", "deterministic_algorithms", "num_threads"):
        assert flag in ident["flags"]


def test_every_backend_reports_availability_with_a_reason():
    rows = backends.describe_backends()
    assert [r["name"] for r in rows] == list(BACKENDS)
    for r in rows:
        assert r["available"] or r["reason"]
        assert (r["identity"] is not None) == r["available"]


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch build has CUDA; the refusal path is for CPU builds")
def test_cuda_refused_on_a_cpu_build_with_its_reason():
    with pytest.raises(BackendUnavailable, match="no CUDA support"):
        get_backend("cuda")


def test_npu_refused_when_torch_npu_is_missing(monkeypatch):
    import importlib.util
    import_torch_npu.cache_clear()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch_npu" else real(name, *a))
    try:
        status = NpuBackend().probe()
        assert not status.available and "not installed" in status.reason
    finally:
        import_torch_npu.cache_clear()


def test_npu_broken_install_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    fake = tmp_path / "torch_npu"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise OSError('libascendcl.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_torch_npu.cache_clear()
    try:
        status = NpuBackend().probe()
        assert not status.available
        assert "failed to import" in status.reason and "libascendcl" in status.reason
        with pytest.raises(BackendUnavailable, match="libascendcl"):
            get_backend("npu")
    finally:
        sys.modules.pop("torch_npu", None)
        import_torch_npu.cache_clear()


def test_npu_installed_without_a_device_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "torch_npu"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '2.13.0'\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class FakeNpu:
        @staticmethod
        def is_available():
            return False
    monkeypatch.setattr(torch, "npu", FakeNpu, raising=False)
    import_torch_npu.cache_clear()
    try:
        status = NpuBackend().probe()
        assert not status.available and "no Ascend NPU visible" in status.reason
    finally:
        sys.modules.pop("torch_npu", None)
        import_torch_npu.cache_clear()


def test_unknown_backend_name():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        get_backend("tpu")


def test_precision_context_pins_and_restores_determinism():
    cpu = get_backend("cpu")
    before = torch.are_deterministic_algorithms_enabled()
    with cpu.precision("ieee", deterministic=not before):
        assert torch.are_deterministic_algorithms_enabled() == (not before)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_precision_modes_table_is_consistent():
    device_types = {cls.device_type for cls in BACKENDS.values()}
    for row in MODES:
        assert row.description and row.mode_class
        assert set(row.flags) <= device_types
    ieee = next(r for r in MODES if r.name == "ieee")
    assert set(ieee.flags) == device_types  # every device type can at least run IEEE fp32
    cpu = get_backend("cpu")
    assert cpu.modes() == ["ieee"]
    with pytest.raises(MissingPrecisionRow, match="'tf32' does not exist on device type 'cpu'"):
        with cpu.precision("tf32"):
            pass


def test_backends_rank_accelerators_above_the_cpu():
    ranks = {name: cls.rank for name, cls in BACKENDS.items()}
    assert ranks["npu"] > ranks["cuda"] > ranks["cpu"] > 0
    assert len(set(ranks.values())) == len(ranks)


def test_a_rocm_build_reports_its_hip_version(monkeypatch):
    import types

    from provenance.backends import CudaBackend
    monkeypatch.setattr(torch.version, "hip", "6.2.41133", raising=False)
    monkeypatch.setattr(torch.version, "cuda", None)
    props = types.SimpleNamespace(major=9, minor=4, total_memory=192 * 2 ** 30, gcnArchName="gfx942:sramecc+:xnack-")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "AMD Instinct MI300X")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 3001000)
    ident = CudaBackend().identity()
    assert ident["backend"] == "cuda" and ident["device_name"] == "AMD Instinct MI300X"
    assert ident["runtime"] == "rocm" and ident["hip"] == "6.2.41133" and ident["cuda"] is None
    assert ident["gpu_arch"].startswith("gfx942")
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    ident = CudaBackend().identity()
    assert ident["runtime"] == "cuda" and ident["hip"] is None and "gpu_arch" not in ident


def test_cpu_timer_measures_time():
    cpu = get_backend("cpu")
    with cpu.timer() as t:
        torch.randn(200, 200) @ torch.randn(200, 200)
    assert t["ms"] > 0


def test_accelerator_adapters_use_the_device_generic_api(monkeypatch):
    import types

    from provenance.backends import CudaBackend
    serves = {"type": "cuda"}

    class FakeAccelerator:
        max_memory_allocated = staticmethod(lambda device: 123)
        max_memory_reserved = staticmethod(lambda device: 456)

        @staticmethod
        def current_accelerator():
            return types.SimpleNamespace(type=serves["type"])

    monkeypatch.setattr(torch, "accelerator", FakeAccelerator, raising=False)
    cuda = CudaBackend()
    assert cuda.api() is FakeAccelerator
    assert cuda.memory_stats() == {"max_allocated_bytes": 123, "max_reserved_bytes": 456}
    serves["type"] = "xpu"  # torch.accelerator serves another device: fall back to torch.cuda's own API
    assert cuda.api() is torch.cuda
