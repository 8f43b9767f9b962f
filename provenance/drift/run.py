"""Drift: every kernel on every backend x dtype x precision mode against a float64 CPU golden,
and the effect of that drift on every lineage verdict."""
from __future__ import annotations

import contextlib
import hashlib
import math
import statistics
from dataclasses import dataclass

import torch

from ..backends import CpuBackend, available_backends, get_backend

from ..errors import Unsupported
from ..fingerprint import fingerprint_view
from ..lineage import compare_fingerprints, margins
from ..model import open_model
from ..progress import Progress
from ..schemas import SCHEMA_VERSIONS, tool_record
from ..precision import EMULATIONS, dtype_row, measured_dtypes
from .emulation import EmulatedBackend
from .kernels_table import KERNELS, kernel_inputs, reorder
from .metrics import bitwise_equal, errors

REPEATS = 3      # runs compared bit for bit
TIMED_RUNS = 5
DRIFT_FLOOR = 1e-12  # drift below this is reported as this (keeps ratios finite)


@dataclass(frozen=True)
class Config:
    """One measured configuration: a backend, a dtype, a precision mode and the determinism setting.

    Attributes:
        backend: the Backend (an EmulatedBackend for emulated modes).
        dtype_name: a measured dtype row's name.
        mode: the mode row's (or emulation row's) name.
        deterministic: torch.use_deterministic_algorithms during the run (None: left as it is).
        emulated: the mode is emulated on the CPU, not set on hardware.
    """

    backend: object
    dtype_name: str
    mode: str
    deterministic: bool | None
    emulated: bool = False

    @property
    def real_mode(self) -> str:
        """The mode set on the device: emulated modes run the CPU in IEEE and round the inputs instead."""
        return "ieee" if self.emulated else self.mode

    @property
    def label(self) -> str:
        """backend/dtype/mode, with +det when deterministic algorithms are forced: the key of verdicts_by_config."""
        det = "+det" if self.deterministic else ""
        return f"{self.backend.name}/{self.dtype_name}/{self.mode}{det}"


def configs(backends, dtype_names) -> list[Config]:
    """Every configuration drift measures on these backends.

    Each dtype in IEEE mode; fp32 also with deterministic algorithms forced and in every reduced mode the
    backend's device type has; on the CPU, every emulation row.

    Args:
        backends: Backend instances.
        dtype_names: measured dtype rows' names.
    Returns:
        The configurations, in measurement order.
    """
    out = []
    for b in backends:
        for dname in dtype_names:
            out.append(Config(b, dname, "ieee", False))
            if dname == "fp32":
                out.append(Config(b, dname, "ieee", True))
                out += [Config(b, dname, m, False) for m in b.modes() if m != "ieee"]
        if b.name == "cpu":
            out += [Config(EmulatedBackend(e), "fp32", e.mode, False, emulated=True) for e in EMULATIONS]
    return out


def _place(inputs: dict, backend, dtype) -> dict:
    return {k: backend.place(v, dtype) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _run(kernel, placed, cfg: Config):
    with cfg.backend.precision(cfg.real_mode, deterministic=cfg.deterministic):
        out = kernel.fn(placed)
        cfg.backend.synchronize()
    return out


def measure_kernel(name: str, kernel, inputs: dict, golden: torch.Tensor, cfg: Config) -> dict:
    """Errors, determinism, slice invariance and time of one kernel in one configuration.

    Args:
        name: the kernel's name (a KERNELS row).
        kernel: its DriftKernel row.
        inputs: the kernel's real-weight inputs, on the CPU in float64.
        golden: the kernel's float64 output on the CPU.
        cfg: the configuration.
    Returns:
        The report row (docs/SCHEMAS.md), or None when an emulated mode does not apply to this kernel.
    """
    dtype = dtype_row(cfg.dtype_name).torch_dtype
    source = inputs
    unpermute = None
    emulation = getattr(cfg.backend, "emulation", None)
    if emulation is not None and emulation.reorder:
        source, perm = reorder(inputs, torch.Generator().manual_seed(7))
        unpermute = torch.argsort(perm)
    elif emulation is not None and not kernel.matmul:
        return None  # reduced-precision matmul inputs do not apply to this kernel
    placed = _place(source, cfg.backend, dtype)
    outs = [_run(kernel, placed, cfg) for _ in range(REPEATS)]
    out = outs[0]
    if unpermute is not None and kernel.output_hidden_axis is not None:
        out = out.index_select(kernel.output_hidden_axis % out.dim(), unpermute.to(out.device))
    row = {"kernel": name, "backend": cfg.backend.name, "dtype": cfg.dtype_name, "mode": cfg.mode,
           "deterministic_algorithms": bool(cfg.deterministic), "emulated": cfg.emulated,
           **errors(out, golden, torch.float32 if cfg.emulated else dtype),
           "deterministic": all(bitwise_equal(outs[0], o) for o in outs[1:])}
    row["slice_invariant"] = _slice_invariant(kernel, placed, outs[0], cfg) if unpermute is None else None
    times = []
    for _ in range(TIMED_RUNS):
        with cfg.backend.timer() as t:
            _run(kernel, placed, cfg)
        times.append(t["ms"])
    row["time_ms"] = statistics.median(times)
    return row


def _slice_invariant(kernel, placed, full, cfg) -> bool | None:
    """Rows computed on a slice of the batch must equal, bit for bit, the same rows computed on the whole."""
    if kernel.slice_input is None:
        return None
    k = placed[kernel.slice_input].shape[0] // 2
    part = _run(kernel, {**placed, kernel.slice_input: placed[kernel.slice_input][:k]}, cfg)
    return bitwise_equal(part, full[:k])


def check_determinism(fn, *args, repeats: int = REPEATS) -> bool:
    """True when `fn(*args)` gives the same bits every time.

    Args:
        fn: the function to run.
        *args: its arguments.
        repeats: how many runs are compared bit for bit.
    Returns:
        Whether every run's output is bitwise equal to the first.
    """
    first = fn(*args)
    return all(bitwise_equal(first, fn(*args)) for _ in range(repeats - 1))


def _digest(inputs: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(inputs):
        v = inputs[k]
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes() if isinstance(v, torch.Tensor) else str(v).encode())
    return h.hexdigest()


def _verdict_effects(views: dict, pairs, cfgs, progress) -> list[dict]:
    """Fingerprint and compare every pair in float64 (golden) and in every configuration."""
    golden_backend = CpuBackend()
    fps = {("golden", l): fingerprint_view(v, golden_backend, dtype=torch.float64, label=l) for l, v in views.items()}
    golden = {p: compare_fingerprints(fps[("golden", p[0])], fps[("golden", p[1])]) for p in pairs}
    by_config = {p: {} for p in pairs}
    usable = [c for c in cfgs if not (c.emulated and getattr(c.backend, "emulation").reorder)]
    tracker = Progress(len(usable), "drift verdicts", progress)
    for cfg in usable:
        with cfg.backend.precision(cfg.real_mode, deterministic=cfg.deterministic):
            for l, v in views.items():
                fps[(cfg.label, l)] = fingerprint_view(v, cfg.backend, dtype=dtype_row(cfg.dtype_name).torch_dtype, label=l)
        for p in pairs:
            by_config[p][cfg.label] = compare_fingerprints(fps[(cfg.label, p[0])], fps[(cfg.label, p[1])])
        tracker.step(cfg.label)
    return [_verdict_row(p, golden[p], by_config[p]) for p in pairs]


def _used(result) -> dict:
    return {s["name"]: s for s in result["signals"] if s["used"] and s["p_value"] is not None}


def _log10(p) -> float:
    return math.log10(max(p, 1e-300))


def _verdict_row(pair, golden, configs_results) -> dict:
    g_used = _used(golden)
    effect_drift, logp_drift, stat_drift = DRIFT_FLOOR, DRIFT_FLOOR, DRIFT_FLOOR
    for r in configs_results.values():
        for name, s in _used(r).items():
            if name in g_used:
                effect_drift = max(effect_drift, abs(s["effect"] - g_used[name]["effect"]))
                stat_drift = max(stat_drift, abs(s["statistic"] - g_used[name]["statistic"]))
                logp_drift = max(logp_drift, abs(_log10(s["p_value"]) - _log10(g_used[name]["p_value"])))
    m = margins(golden)
    effect_margin, logp_margin = m["effect_margin"], m["log10_p_margin"]
    if golden["verdict"] == "derived":
        ratio = min(effect_margin / effect_drift, logp_margin / logp_drift)
    elif golden["verdict"] == "independent":
        ratio = logp_margin / logp_drift
    else:
        ratio = None
    verdicts = {label: r["verdict"] for label, r in configs_results.items()}
    flips = sorted(label for label, v in verdicts.items() if v != golden["verdict"])
    deciding_drift = logp_drift if golden["verdict"] == "independent" else min(effect_drift, logp_drift)
    return {"pair": list(pair), "verdict": golden["verdict"], "stable": not flips, "flipped_in": flips,
            "margin_to_drift": None if ratio is None else min(ratio, 1e12),
            "drift_at_floor": deciding_drift <= DRIFT_FLOOR,
            "effect_margin": effect_margin, "log10_p_margin": logp_margin,
            "max_effect_drift": effect_drift, "max_statistic_drift": stat_drift, "max_log10_p_drift": logp_drift,
            "verdicts_by_config": verdicts}


KERNEL_ROLES = ("embed", "attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.down")


def kernel_pair(views: dict) -> tuple[str, str]:
    """The first two models (in order) whose layer 0 has every role the kernels use, in the same shapes
    (the gate projection is optional, but both or neither must have it).

    Args:
        views: label -> ModelView.
    Returns:
        Two labels; the same label twice when only one model qualifies.
    Raises:
        Unsupported: no model has what the kernels need.
    """
    def shapes(v):
        return [v.shape(r, None if r == "embed" else 0) for r in KERNEL_ROLES]

    def signature(v):
        s = shapes(v)
        return s[0][1], s[1:], v.shape("mlp.gate", 0)

    ready = [l for l, v in views.items() if all(s is not None for s in shapes(v))]
    for i, a in enumerate(ready):
        for b in ready[i + 1:]:
            if signature(views[a]) == signature(views[b]):
                return a, b
    if ready:
        return ready[0], ready[0]
    raise Unsupported("drift kernels need a dense model with separate q/k/v/o and up/down projections in layer 0")


RECIPE_KEY = "provenance_zoo_recipe"  # what the embedded zoo writes into config.json


def _input_record(label: str, view) -> dict:
    """An input by content hash and, for a zoo model, by the recipe it was built from: the same recipe gives
    equivalent but not bit-identical weights on CPUs of another instruction set."""
    record = {"label": label, "content_hash": view.source.content_hash()}
    recipe = view.source.config.get(RECIPE_KEY)
    if isinstance(recipe, dict):
        record["recipe"] = recipe
    return record


def run_drift(models: list[str], labels: list[str], backend_names: list[str] | None, dtype_names: list[str],
              progress: bool = True) -> dict:
    """Measure every kernel on every backend x dtype x mode against the float64 golden, and each verdict's effects.

    Args:
        models: model paths (at least one; pairs among them get verdict rows).
        labels: one label per model, used in the report.
        backend_names: backends to measure (default: every available one).
        dtype_names: dtypes to measure, measured rows of the precision table (provenance/precision.py).
        progress: show progress on stderr.
    Returns:
        The drift report document (docs/SCHEMAS.md). The models are closed on return.
    """
    backends = [get_backend(n) for n in backend_names] if backend_names else available_backends()
    known = measured_dtypes()
    unknown = [d for d in dtype_names if d not in known]
    if unknown:
        raise Unsupported(f"unknown dtype {unknown[0]!r}; choose from {', '.join(known)}")
    with contextlib.ExitStack() as stack:
        views = {l: stack.enter_context(open_model(m)) for l, m in zip(labels, models)}
        return _measure_all(views, labels, backends, dtype_names, progress)


def _measure_all(views: dict, labels: list[str], backends: list, dtype_names: list[str], progress: bool) -> dict:
    first, second = kernel_pair(views)
    inputs = kernel_inputs(views[first], views[second])
    cfgs = configs(backends, dtype_names)
    golden = {name: k.fn(inputs) for name, k in KERNELS.items()}
    rows = []
    tracker = Progress(len(cfgs), "drift kernels", progress)
    for cfg in cfgs:
        for name, kernel in KERNELS.items():
            row = measure_kernel(name, kernel, inputs, golden[name], cfg)
            if row is not None:
                rows.append(row)
        tracker.step(cfg.label)
    pairs = [(labels[i], labels[j]) for i in range(len(labels)) for j in range(i + 1, len(labels))]
    verdicts = _verdict_effects(views, pairs, cfgs, progress) if pairs else []
    identities = {b.name: b.identity() for b in backends}
    identities.update({c.backend.name: c.backend.identity() for c in cfgs if c.emulated})
    return {
        "schema_version": SCHEMA_VERSIONS["drift"], "tool": tool_record(),
        "inputs": {"models": [_input_record(l, views[l]) for l in labels],
                   "kernel_inputs_sha256": _digest(inputs), "kernel_layer": 0, "kernel_models": [first, second]},
        "identity": identities,
        "golden": {"backend": "cpu", "dtype": "float64", "identity": CpuBackend().identity()},
        "emulations": {e.mode: e.description for e in EMULATIONS},
        "rows": rows,
        "verdicts": verdicts,
    }
