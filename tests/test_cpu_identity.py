"""The CPU identity record names the instruction set torch dispatches to: the same training gives
different bits on AVX2 and AVX-512, so it is part of who computed a result."""
import torch

import provenance.backends.cpu as cpu_module
from provenance.backends import CpuBackend

XEON_FLAGS = "fpu vme sse4_2 avx f16c fma avx2 avx512f avx512bw avx512_bf16 amx_tile amx_bf16 avx_vnni rdrand".split()


def test_isa_flags_keep_the_instruction_sets_that_choose_kernels():
    assert cpu_module.isa_flags(XEON_FLAGS) == ["amx_bf16", "amx_tile", "avx", "avx2", "avx512_bf16", "avx512bw",
                                                "avx512f", "avx_vnni", "f16c", "fma", "sse4_2"]
    assert cpu_module.isa_flags(None) is None


def test_identity_records_capability_flags_and_model():
    ident = CpuBackend().identity()
    assert ident["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert ident["cpu_model"] and ident["machine"]
    assert ident["isa_flags"] is None or all(f.startswith(("avx", "amx", "sse", "fma", "f16c")) for f in ident["isa_flags"])


def test_unreadable_cpuinfo_leaves_flags_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_module, "CPUINFO", str(tmp_path / "missing"))
    ident = CpuBackend().identity()
    assert ident["isa_flags"] is None and ident["cpu_model"]


def test_cpuinfo_is_read_for_model_and_flags(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: " + " ".join(XEON_FLAGS) + "\n\n"
                    "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    monkeypatch.setattr(cpu_module, "CPUINFO", str(info))
    ident = CpuBackend().identity()
    assert ident["cpu_model"] == ident["device_name"] == "Test CPU 9000"
    assert "avx512f" in ident["isa_flags"] and "rdrand" not in ident["isa_flags"]
