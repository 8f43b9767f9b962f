"""The verification suite: every capability, on every model, on every chosen backend.

Each stage reads the shared context and returns its JSON section and its report
sections; adding a capability is adding a row to STAGES.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .atomic import write_json
from .backends import available_backends, describe_backends, get_backend
from .drift import run_drift
from .errors import Unsupported
from .fingerprint import fingerprint_model
from .lineage import compare_fingerprints
from .model import inspect_model
from .outputs import refuse_outputs
from .progress import Progress
from .report.drift import drift_sections
from .report.lineage import write_comparison_report
from .report.render import Link, Section, write_report
from .report.wording import VERDICT_WORDS, deciding_signal, null_size, p_value_note, p_with_null, verdict_words
from .schemas import stamp
from .zoo import DEMO_MODELS, TRANSFORMS, build_many, parse_name


@dataclass
class SuiteContext:
    models: list[str]
    labels: list[str]
    backends: list  # Backend instances
    out: Path
    progress: bool
    results: dict = field(default_factory=dict)
    fingerprints: dict = field(default_factory=dict)
    vocab_file: Path | None = None  # tokenizer for models that ship none


def _stage_inspect(ctx: SuiteContext):
    rows, infos = [], {}
    for label, path in zip(ctx.labels, ctx.models):
        info = inspect_model(path)
        infos[label] = info
        rows.append([label, info["format"], info["family"], info["num_layers"], info["hidden_size"],
                     info["num_experts"], info["vocab_size"], info["num_parameters"], info["content_hash"][:16]])
    section = Section("Models", "Each input as the readers and family tables see it, with its content hash.",
                      ["model", "format", "family", "layers", "hidden", "experts", "vocab", "parameters", "content hash"], rows)
    return infos, [section]


def _stage_backends(ctx: SuiteContext):
    rows = describe_backends()
    used = {b.name for b in ctx.backends}
    table = [[r["name"], "yes" if r["available"] else "no", "yes" if r["name"] in used else "no",
              r["identity"]["device_name"] if r["available"] else r["reason"]] for r in rows]
    return rows, [Section("Backends", "Every backend this machine could offer, and the ones this run used.",
                          ["backend", "available", "used", "device or reason"], table)]


def _stage_fingerprint(ctx: SuiteContext):
    """Every model on every backend; the fingerprint files go into the bundle."""
    ctx.fingerprints = {}
    out, rows = {}, []
    for b in ctx.backends:
        for label, path in zip(ctx.labels, ctx.models):
            with b.timer() as t:
                fp = fingerprint_model(path, b, label=label, progress=False, vocab_file=ctx.vocab_file)
            fp.doc.update(stamp(fp.doc, "fingerprint"))
            name = f"fingerprints/{label}.{b.name}.safetensors"
            fp.save(ctx.out / name)
            ctx.fingerprints[(label, b.name)] = fp
            out.setdefault(label, {})[b.name] = {"file": name, "ms": t["ms"], "layers": fp.num_layers,
                                                  "anchors": fp.settings()["n_anchors"]}
            rows.append([label, b.name, fp.num_layers, fp.settings()["n_anchors"], t["ms"]])
    return out, [Section("Fingerprints", "One streaming pass per model and backend; the files are in fingerprints/.",
                         ["model", "backend", "layers", "anchors", "time (ms)"], rows)]


def _stage_compare(ctx: SuiteContext):
    """Every pair of models, on every backend's fingerprints; verdicts must agree across backends."""
    results = []
    first = ctx.backends[0].name
    for i, a in enumerate(ctx.labels):
        for b in ctx.labels[i + 1:]:
            per_backend = {be.name: compare_fingerprints(ctx.fingerprints[(a, be.name)], ctx.fingerprints[(b, be.name)])
                           for be in ctx.backends}
            r = per_backend[first]
            verdicts = {name: x["verdict"] for name, x in per_backend.items()}
            folder = f"comparisons/{a}__{b}"
            write_comparison_report(ctx.out / folder, r, ctx.fingerprints[(a, first)], ctx.fingerprints[(b, first)],
                                    up="../../report.{ext}")  # comparisons/<pair>/ is two levels down
            results.append({"a": a, "b": b, "verdict": r["verdict"], "p_value": r["p_value"], "reason": r["reason"],
                            "verdicts_by_backend": verdicts, "backends_agree": len(set(verdicts.values())) == 1,
                            "layer_map": r["layer_map"], "signals": r["signals"], "report": folder})
    return results, [_lineage_section(results)]


def _lineage_row(c: dict, margin_in_cell: bool) -> list:
    best = deciding_signal(c)
    effect = "n/a" if best is None or best.get("effect") is None else f"{best['effect'] + 0.0:.2f}".replace("-0.00", "0.00")
    if margin_in_cell and best and best.get("min_effect") is not None:
        effect += f" (margin {best['min_effect']:g})"
    return [c["a"], c["b"], c["verdict"], effect, p_with_null(c["p_value"], null_size(best)), c["reason"],
            "yes" if c["backends_agree"] else "NO", Link("report", f"{c['report']}/report.{{ext}}")]


def _lineage_section(results: list[dict]) -> Section:
    sizes = [null_size(deciding_signal(c)) for c in results]
    margins = {(deciding_signal(c) or {}).get("min_effect") for c in results} - {None}
    # one margin for every pair goes in the header; several go beside each effect
    rows = [_lineage_row(c, margin_in_cell=len(margins) > 1) for c in results]
    effect_header = f"effect (margin {margins.pop():g})" if len(margins) == 1 else "effect"
    text = ("Was B derived from A? Effect: how much more alike the corresponding layers are than the layers that do not "
            "correspond (median similarity minus the null's median) for the signal the p-value comes from; a derived "
            "verdict needs it above its margin as well as a small p-value. Each pair's report explains its verdict, with "
            "plots.")
    note = p_value_note(min((n for n in sizes if n), default=None))
    return Section("Lineage", text + ("\n\nHow to read the p-values: " + note if note else ""),
                   ["A", "B", "verdict", effect_header, "p-value", "reason", "backends agree", "report"], rows)


def _stage_drift(ctx: SuiteContext):
    """Kernel drift against float64 on the chosen backends, and the stability of every verdict above."""
    try:
        report = run_drift(ctx.models, ctx.labels, [b.name for b in ctx.backends], ["fp32", "bf16", "fp16"], progress=ctx.progress)
    except Unsupported as exc:  # the other stages stand on their own; say why this one could not run
        return {"skipped": str(exc)}, [Section("Drift", f"Not measured: {exc}.")]
    write_json(ctx.out / "drift.json", stamp(report, "drift"))
    summary = {"file": "drift.json", "rows": len(report["rows"]),
               "all_verdicts_stable": all(v["stable"] for v in report["verdicts"]),
               "min_margin_to_drift": min((v["margin_to_drift"] for v in report["verdicts"] if v["margin_to_drift"]), default=None)}
    sections = drift_sections(report)
    sections[0].text += " Every number is in [drift.json](drift.json)."
    return summary, sections


# name -> stage function; run in order, each sees the results of those before it
STAGES: dict[str, Callable] = {
    "backends": _stage_backends,
    "inspect": _stage_inspect,
    "fingerprint": _stage_fingerprint,
    "compare": _stage_compare,
    "drift": _stage_drift,
}


# names that say nothing about which model it is: use the folder above instead
GENERIC_NAMES = {"model", "models", "weights", "checkpoint", "checkpoints", "pytorch_model", "onnx", "gguf", "hf"}


def _labels(models: list[str]) -> list[str]:
    """Short, distinct, filename-safe names for the models (they name files inside the bundle)."""
    labels = []
    for m in models:
        p = Path(m).resolve()
        base = p.name if p.is_dir() else p.stem
        while base.lower() in GENERIC_NAMES and p.parent != p:
            p = p.parent
            base = p.name
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "model"
        label, n = base, 2
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.append(label)
    return labels


def run_suite(models: list[str], out: Path, backend_names: list[str] | None = None, progress: bool = True,
              labels: list[str] | None = None, descriptions: dict[str, str] | None = None,
              vocab_file: Path | None = None, extra_stages: dict[str, Callable] | None = None) -> dict:
    """Every stage of STAGES (then `extra_stages`) over the models; writes the evidence bundle into `out`."""
    out = Path(out)
    stages = {**STAGES, **(extra_stages or {})}
    refuse_outputs([], models, directories=[out])
    chosen = [get_backend(n) for n in backend_names] if backend_names else available_backends()
    ctx = SuiteContext(models, labels or _labels(models), chosen, out, progress, vocab_file=vocab_file)
    sections = []
    with Progress(len(stages), "suite", progress) as tracker:
        for name, stage in stages.items():
            tracker.step(name)
            ctx.results[name], stage_sections = stage(ctx)
            sections += stage_sections
    bundle = stamp({
        "inputs": [{"label": label, "path": path, "content_hash": ctx.results["inspect"][label]["content_hash"],
                    "sha256": ctx.results["inspect"][label]["sha256"]} for label, path in zip(ctx.labels, models)],
        "identity": {b.name: b.identity() for b in chosen},
        **ctx.results,
    }, "suite")
    for b in chosen:
        write_json(out / "identity" / f"{b.name}.json", stamp(bundle["identity"][b.name], "identity"))
    write_json(out / "inputs.json", stamp({"inputs": bundle["inputs"]}, "inputs"))
    bundle["summary"] = summarize(bundle)
    write_json(out / "suite.json", bundle)
    write_report(out, "provenance verification suite", [_summary_section(bundle, descriptions)] + sections)
    return bundle


def _summary_section(bundle: dict, descriptions: dict[str, str] | None) -> Section:
    """The plain-language summary: what was compared, the verdicts, what they mean and do not mean."""
    models = len(bundle["inputs"])
    compare = bundle.get("compare") or []
    paras = [f"Compared: {models} models (listed below), every pair of them ({len(compare)} pairs), from their weights "
             f"alone, on {', '.join(bundle['identity'])}."]
    if compare:
        verdicts = [c["verdict"] for c in compare]
        counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICT_WORDS if v in verdicts)
        counts += "".join(f", {verdicts.count(v)} {v}" for v in sorted(set(verdicts) - set(VERDICT_WORDS)))
        same = all(c["backends_agree"] for c in compare)
        paras.append(f"Verdicts: {counts}. " + ("Each verdict was the same on every backend." if same else
                                                "Backends DISAGREE on some verdicts: see the lineage table."))
    drift = bundle.get("drift")
    if drift is not None:
        paras.append(f"Hardware: drift not measured ({drift['skipped']})." if "skipped" in drift else
                     "Hardware: every verdict stayed the same when computed in reduced precision (drift below)."
                     if drift["all_verdicts_stable"] else "Hardware: a verdict CHANGES under reduced precision (drift below).")
    paras.append("The evidence behind each verdict is in the lineage table and each pair's report. Identity records of the "
                 "backends are in identity/, content hashes of the inputs in [inputs.json](inputs.json), every number in "
                 "[suite.json](suite.json).")
    items = []
    for v in dict.fromkeys([*(v for v in VERDICT_WORDS if any(c["verdict"] == v for c in compare)),
                            *(c["verdict"] for c in compare)]):
        headline, means, not_means = verdict_words(v)
        pairs = ", ".join(f"[{c['a']} vs {c['b']}]({c['report']}/report.{{ext}})" for c in compare if c["verdict"] == v)
        items.append((f"{v}, {headline}", f"{means} {not_means} Pairs: {pairs}."))
    rows = [[i["label"], (descriptions or {}).get(i["label"], i["path"]), i["content_hash"][:16]] for i in bundle["inputs"]]
    return Section("Summary", "\n\n".join(paras), ["model", "what it is", "content hash"], rows, items=items, lead=True)


def summarize(bundle: dict) -> str:
    parts = [f"{len(bundle['inputs'])} models", f"backends: {', '.join(bundle['identity'])}"]
    if "drift" in bundle:
        drift = bundle["drift"]
        parts.append("drift: not measured" if "skipped" in drift else
                     "drift: every verdict stable" if drift["all_verdicts_stable"] else "drift: a verdict FLIPS")
    if "compare" in bundle:
        verdicts = [c["verdict"] for c in bundle["compare"]]
        parts.append(f"{len(verdicts)} comparisons: " + ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts))))
    if "claims" in bundle and "skipped" not in bundle["claims"]:
        claims = bundle["claims"].values()
        parts.append(f"platform claims: {sum(c['verdict'] == c['expected'] for c in claims)} of {len(claims)} as expected")
    return "; ".join(parts)


def _stage_demo_claims(ctx: SuiteContext):
    """The demo's platform claims: one honest training segment and its spoofs, each verified (needs transformers)."""
    if importlib.util.find_spec("transformers") is None:
        reason = "transformers is not installed (pip install 'provenance-verifier[replay]')"
        return {"skipped": reason}, [Section("Platform claims", f"Not run: {reason}.")]
    from .claims.demo import run_demo_claims
    results, expected, sections = run_demo_claims(ctx.out / "claims", backend_name=ctx.backends[0].name)
    return {name: {"verdict": r["verdict"], "expected": expected[name]} for name, r in results.items()}, sections


def run_demo(out: Path, backend_names: list[str] | None = None, progress: bool = True, claims: bool = True) -> dict:
    """The suite over the embedded zoo's demo models, and (with `claims`) the platform-claims demo."""
    with Progress(len(DEMO_MODELS), "build zoo", progress) as tracker:
        paths = build_many(DEMO_MODELS, progress=tracker.step)
    descriptions = {name: _zoo_description(name) for name in DEMO_MODELS}
    return run_suite([str(paths[n]) for n in DEMO_MODELS], out, backend_names, progress, labels=list(DEMO_MODELS),
                     descriptions=descriptions, extra_stages={"claims": _stage_demo_claims} if claims else None)


def _zoo_description(name: str) -> str:
    seed, transform = parse_name(name)
    if transform is None:
        return f"a tiny decoder trained from seed {seed} on the Python standard library's top-level modules"
    return f"derived from base-s{seed}: {TRANSFORMS[transform].description}"
