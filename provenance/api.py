"""The library under the command line: one function per command, each returning a typed result.

Every result carries its JSON document (stamped with `schema_version` and `tool`), the identity
record of the backend that computed it and the content hashes of its inputs. The CLI only parses
options, calls these functions and prints; a Python program calls them the same way:

    from provenance import api
    result = api.compare("model-a/", "model-b/")
    print(result.verdict, result.p_value)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import errors, limits
from .atomic import write_json
from .backends import BACKENDS, Backend, describe_backends, get_backend  # noqa: F401 (the command line reads api.BACKENDS)
from .drift import compare_reports, run_drift
from .fingerprint import Fingerprint, fingerprint_model, is_fingerprint_file, load_fingerprint
from .io.base import read_json_file
from .lineage import compare_fingerprints
from .model import inspect_model, open_model
from .outputs import refuse_outputs
from .precision import measured_dtypes
from .report.drift import write_drift_comparison, write_drift_report
from .report.lineage import write_comparison_report
from .report.schemas import errors as schema_errors
from .schemas import stamp
from .suite import run_demo, run_suite
from .zoo import DEMO_MODELS, build_many

DEFAULT_DTYPES = ("fp32", "bf16", "fp16")
DTYPE_NAMES = measured_dtypes()  # what --dtypes accepts


@dataclass
class Result:
    """A document and where it came from.

    Attributes:
        document: the JSON document, as `--json` prints it and the schemas describe it.
        identity: backend name -> identity record of the backends that computed it (empty when none did).
        input_hashes: input label -> content hash.
        written: files and report directories this call wrote, in order.
    """

    document: dict
    identity: dict = field(default_factory=dict)
    input_hashes: dict = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    def to_json(self) -> dict:
        """The JSON document.

        Returns:
            The document, a dict ready for json.dumps.
        """
        return self.document


@dataclass
class BackendsResult(Result):
    """Every registered backend, whether it is available here and why not (`backends()`)."""

    @property
    def rows(self) -> list[dict]:
        """One row per backend: name, available, reason, identity."""
        return self.document["backends"]


@dataclass
class InspectResult(Result):
    """A checkpoint's facts and role map, from headers (`inspect()`)."""


@dataclass
class FingerprintResult(Result):
    """A computed fingerprint (`fingerprint()`); `fingerprint` is the record itself."""

    fingerprint: Fingerprint | None = None


@dataclass
class CompareResult(Result):
    """A lineage comparison of two models (`compare()`)."""

    @property
    def verdict(self) -> str:
        """derived, independent or inconclusive."""
        return self.document["verdict"]

    @property
    def p_value(self) -> float | None:
        """The deciding p-value (None when no calibrated signal could be used)."""
        return self.document["p_value"]


@dataclass
class DriftResult(Result):
    """A drift report: every kernel on every backend, dtype and mode against float64 (`drift()`)."""

    @property
    def stable(self) -> bool:
        """True when no verdict between the models flips in any configuration."""
        return all(v["stable"] for v in self.document["verdicts"])


@dataclass
class DriftCompareResult(Result):
    """Drift reports from different machines compared (`drift_compare()`)."""

    @property
    def status(self) -> str:
        """pass, warn or fail."""
        return self.document["status"]


@dataclass
class SuiteResult(Result):
    """An evidence bundle's index document (`suite()`, `demo()`)."""

    @property
    def summary(self) -> str:
        """The bundle's one-paragraph summary."""
        return self.document["summary"]


def _backend(backend: str | Backend) -> Backend:
    return get_backend(backend) if isinstance(backend, str) else backend


def verify_fingerprint(fp: str | Path, model: str | Path, *, backend: str | Backend = "cpu",
                       trust: str | Path | None = None, progress: bool = False) -> dict:
    """Does a fingerprint file come from these weights? Recomputes it and compares a sample of layers.

    Args:
        fp: the fingerprint file.
        model: the checkpoint it claims to come from.
        backend: where the recomputation runs.
        trust: a PEM public key or a folder of them the file must be signed by, or None.
        progress: show progress on stderr.
    Returns:
        {"match", "checks", "layers", "max_distance", "signer"}.
    """
    from .fingerprint.verify import require_trusted, signer_of, verify
    if not is_fingerprint_file(Path(fp)):
        raise errors.MalformedInput("not a provenance fingerprint file", fp)
    if trust is not None:
        require_trusted(fp, trust)
    result = verify(fp, model, _backend(backend), progress=progress)
    result["signer"] = signer_of(fp)
    return result


def generate_keys(private: str | Path, public: str | Path) -> str:
    """Write a new ed25519 key pair for signing fingerprints (the private file is never overwritten).

    Args:
        private: the PEM private key file to create.
        public: the PEM public key file to write.
    Returns:
        The public key, raw, in hex.
    """
    from .fingerprint.signing import generate
    if Path(private).exists() or Path(private).is_symlink():
        raise errors.UnsafeInput("refusing to overwrite an existing key file", private)
    return generate(private, public)


def backends() -> BackendsResult:
    """Every backend this program knows, whether this machine offers it, and why not.

    Returns:
        BackendsResult whose document is `{schema_version, tool, backends: [{name, available, reason, identity}]}`.
    """
    rows = describe_backends()
    doc = stamp({"backends": rows}, "backends")
    return BackendsResult(doc, identity={r["name"]: r["identity"] for r in rows if r["available"]})


def inspect(path: str | Path, *, with_hashes: bool = True) -> InspectResult:
    """Format, family, shape facts and role map of a checkpoint, from headers alone.

    Args:
        path: checkpoint file or directory.
        with_hashes: hash every file read (off for a quick look at a huge checkpoint).
    Returns:
        InspectResult with the inspect document.
    """
    doc = stamp(inspect_model(path, with_hashes=with_hashes), "inspect")
    return InspectResult(doc, input_hashes={Path(path).name: doc["content_hash"]})


def load_or_fingerprint(path: str | Path, backend: str | Backend = "cpu", *, label: str | None = None,
                        vocab: Path | None = None, progress: bool = False) -> Fingerprint:
    """A fingerprint file as it is, or a checkpoint fingerprinted now.

    Args:
        path: fingerprint file (.safetensors written by `fingerprint`) or checkpoint.
        backend: backend name or instance used when a checkpoint must be fingerprinted.
        label: name recorded for a checkpoint (default: the path's name).
        vocab: tokenizer file for checkpoints that ship none.
        progress: show progress on stderr.
    Returns:
        The Fingerprint.
    """
    path = Path(path)
    if is_fingerprint_file(path):
        return load_fingerprint(path)
    return fingerprint_model(path, _backend(backend), label=label or path.name, progress=progress, vocab_file=vocab)


def fingerprint(path: str | Path, output: str | Path | None = None, *, backend: str | Backend = "cpu",
                label: str | None = None, vocab: Path | None = None, keep_path: bool = False,
                progress: bool = False, sign_key: str | Path | None = None) -> FingerprintResult:
    """Stream a checkpoint once and compute its portable fingerprint; save it where asked.

    Args:
        path: checkpoint file or directory.
        output: fingerprint file to write (must end in .safetensors), or None to keep it in memory.
        backend: backend name ("cpu", "cuda:1", ...) or instance.
        label: name recorded in the fingerprint (default: the path's name).
        vocab: tokenizer file for checkpoints that ship none.
        keep_path: record the checkpoint's absolute local path (for private use; off by default).
        progress: show progress on stderr.
        sign_key: a PEM ed25519 private key to sign the file with (proves who wrote it), or None.
    Returns:
        FingerprintResult with the fingerprint, its document, the backend identity and the input hash.
    """
    path = Path(path)
    if output is not None:
        output = Path(output)
        if not output.name.endswith(".safetensors"):
            raise ValueError(f"{output}: the output name must end in .safetensors")
        refuse_outputs([output], [path])
    if sign_key is not None:  # an unusable key is refused before the work, not after it
        from .fingerprint.signing import load_private_key
        load_private_key(sign_key)
    engine = _backend(backend)
    extra = {"record_path": True} if keep_path else {}
    fp = fingerprint_model(path, engine, label=label or path.name, progress=progress, vocab_file=vocab, **extra)
    fp.doc.update(stamp(fp.doc, "fingerprint"))
    written = []
    if output is not None:
        fp.save(output, sign_key=sign_key)
        written.append(output)
    model = fp.doc.get("model", {})
    return FingerprintResult(fp.doc, identity={engine.name: engine.identity()},
                             input_hashes={model.get("label", path.name): model.get("content_hash")},
                             written=written, fingerprint=fp)


def compare(a: str | Path, b: str | Path, *, backend: str | Backend = "cpu", vocab: Path | None = None,
            report: str | Path | None = None, progress: bool = False, trust: str | Path | None = None) -> CompareResult:
    """Was B derived from A? A verdict with calibrated evidence.

    Args:
        a, b: checkpoints or fingerprint files.
        backend: backend for fingerprinting checkpoints given directly.
        vocab: tokenizer file for checkpoints that ship none.
        report: directory for a Markdown/HTML report with plots, or None.
        progress: show progress on stderr.
        trust: a PEM public key or a folder of them: fingerprint files given must be signed by one of them.
    Returns:
        CompareResult: the compare document (verdict, p_value, signals, ...), with `backend` set to the
        identity record of the backend that fingerprinted any checkpoint given directly.
    """
    a, b = Path(a), Path(b)
    refuse_outputs([], [p for p in (a, b) if not is_fingerprint_file(p)], directories=[report])
    if trust is not None:
        from .fingerprint.verify import require_trusted
        for p in (a, b):
            if is_fingerprint_file(p):
                require_trusted(p, trust)
    engine = _backend(backend)
    fa = load_or_fingerprint(a, engine, vocab=vocab, progress=progress)
    fb = load_or_fingerprint(b, engine, vocab=vocab, progress=progress)
    doc = stamp({**compare_fingerprints(fa, fb), "backend": engine.identity()}, "compare")
    written = []
    if report is not None:
        write_comparison_report(Path(report), doc, fa, fb)
        written.append(Path(report))
    hashes = {side["label"]: side["content_hash"] for side in (doc["a"], doc["b"])}
    return CompareResult(doc, identity={engine.name: doc["backend"]}, input_hashes=hashes, written=written)


def drift(models: Sequence[str | Path] | None = None, *, backends: Sequence[str] | None = None,
          dtypes: Sequence[str] | None = None, output: str | Path | None = None, report: str | Path | None = None,
          progress: bool = False) -> DriftResult:
    """Kernel drift against a float64 golden run on every backend, dtype and precision mode, and the
    stability of every verdict between the models.

    Args:
        models: checkpoints (default: the demo zoo, built on first use). One model is measured against itself.
        backends: backend names (default: every available one).
        dtypes: fp32, bf16, fp16 (default: all three).
        output: drift.json to write, or None.
        report: directory for a Markdown/HTML report with plots, or None.
        progress: show progress on stderr.
    Returns:
        DriftResult with the drift report.
    """
    if models:
        paths, labels = [str(m) for m in models], [Path(m).name for m in models]
        refuse_outputs([output], paths, directories=[report])
    else:
        refuse_outputs([output], [], directories=[report])
        built = build_many(DEMO_MODELS)
        paths, labels = [str(built[n]) for n in DEMO_MODELS], list(DEMO_MODELS)
    if len(paths) == 1:
        paths, labels = paths * 2, [labels[0], labels[0] + "-again"]
    doc = stamp(run_drift(paths, labels, list(backends) if backends else None, list(dtypes or DEFAULT_DTYPES),
                          progress=progress), "drift")
    written = _save(doc, output, report, write_drift_report)
    return DriftResult(doc, identity=doc["identity"],
                       input_hashes={m["label"]: m["content_hash"] for m in doc["inputs"]["models"]}, written=written)


def read_drift_report(path: str | Path) -> dict:
    """A drift report read from disk, or a one-line error naming the file.

    Args:
        path: a JSON file written by `drift -o`.
    Returns:
        The report.
    """
    path = Path(path)
    if not path.is_file():
        raise errors.InputNotFound("no such drift report", path)
    doc = read_json_file(path)
    if isinstance(doc, dict) and isinstance(doc.get("rows"), list):  # before the schema walks every row
        limits.check("rows", len(doc["rows"]), path, "rows in the drift report")
    # reports written before documents named their tool are still read
    problems = [p for p in schema_errors(doc, "drift") if p != "(root): 'tool' is a required property"]
    if problems:
        raise errors.MalformedInput(f"not a drift report: {problems[0]}", path)
    return doc


def drift_compare(reports: Sequence[str | Path], *, output: str | Path | None = None,
                  report: str | Path | None = None) -> DriftCompareResult:
    """Compare drift reports made on different machines against the first one.

    Args:
        reports: drift report files; the first is the reference.
        output: comparison JSON to write, or None.
        report: directory for a Markdown/HTML report with a plot, or None.
    Returns:
        DriftCompareResult: per-kernel error ratios, verdict agreement, counts and status (pass, warn, fail).
    """
    refuse_outputs([output], [], directories=[report])
    docs = [read_drift_report(p) for p in reports]
    doc = stamp(compare_reports(docs, [str(p) for p in reports]), "drift_compare")
    written = _save(doc, output, report, write_drift_comparison)
    identity = {str(p): d.get("identity", {}) for p, d in zip(reports, docs)}
    hashes = {m["label"]: m["content_hash"] for m in docs[0]["inputs"].get("models", [])}
    return DriftCompareResult(doc, identity=identity, input_hashes=hashes, written=written)


def suite(models: Sequence[str | Path], out: str | Path, *, backends: Sequence[str] | None = None,
          vocab: Path | None = None, progress: bool = False) -> SuiteResult:
    """Every capability on the models across backends; writes an evidence bundle.

    Args:
        models: checkpoints (files or directories).
        out: directory for the evidence bundle (never inside a model directory).
        backends: backend names (default: every available one).
        vocab: tokenizer file for checkpoints that ship none.
        progress: show progress on stderr.
    Returns:
        SuiteResult with suite.json's document.
    """
    doc = run_suite([str(m) for m in models], Path(out), backend_names=list(backends) if backends else None,
                    progress=progress, vocab_file=vocab)
    return _suite_result(doc, Path(out))


def demo(out: str | Path = "provenance-demo", *, backends: Sequence[str] | None = None,
         progress: bool = False, claims: bool = True) -> SuiteResult:
    """Build the embedded tiny-model zoo (no download) and run the suite on it.

    Args:
        out: directory for the demo's evidence bundle.
        backends: backend names (default: every available one).
        progress: show progress on stderr.
        claims: also run the platform-claims demo (an honest training segment and three spoofs; needs transformers).
    Returns:
        SuiteResult with suite.json's document.
    """
    doc = run_demo(Path(out), backend_names=list(backends) if backends else None, progress=progress, claims=claims)
    return _suite_result(doc, Path(out))


@dataclass
class MatchNeuronsResult(Result):
    @property
    def matches(self) -> list[dict]:
        return self.document["matches"]

    @property
    def certified_optimal(self) -> bool:
        """True when every assignment is proven to be an exact optimum."""
        return self.document["summary"]["certified_optimal"]


def match_neurons(a: str | Path, b: str | Path, layer_a: int, layer_b: int | None = None, *,
                  backend: str | Backend = "cpu", output: str | Path | None = None, candidates: int | None = None,
                  progress: bool = False) -> MatchNeuronsResult:
    """Which neuron of B's MLP layer is which neuron of A's: a one-to-one assignment by weight similarity
    (many-to-one, expert by expert, when one layer is a mixture of experts and the other dense).

    Narrow layers get scipy's exact dense assignment; wide ones (real model widths) candidate pruning, an exact
    sparse assignment and a dual certificate that proves it optimal for the full similarity matrix or bounds
    how far from optimal it can be (provenance/kernels/matching.py).

    Args:
        a, b: checkpoints (files or directories).
        layer_a: A's layer index.
        layer_b: B's layer index (default: layer_a).
        backend: where the similarity is computed (the assignment itself runs on the CPU).
        output: JSON document to write, or None.
        candidates: candidate columns per row for wide layers (default: the matcher's, 16).
        progress: show progress on stderr.
    Returns:
        MatchNeuronsResult: per assignment its permutation, matched similarities, method and certificate.
    """
    from .neurons import assignment_record, match_layers
    from .progress import Progress
    layer_b = layer_a if layer_b is None else layer_b
    a, b = Path(a), Path(b)
    refuse_outputs([output], [a, b])
    engine = _backend(backend)
    options = {} if candidates is None else {"k": candidates}
    with open_model(a) as va, open_model(b) as vb:
        sides = {"a": va, "b": vb}
        with Progress(max(1, len(va.experts(layer_a)) + len(vb.experts(layer_b)) + 1), "match neurons",
                      progress) as tracker:
            found = match_layers(va, vb, layer_a, layer_b, engine, progress=tracker, **options)
        for key, path in (("a", a), ("b", b)):
            found[key] = {"label": path.name, "content_hash": sides[key].source.content_hash(), **found[key]}
    records = [{"group": m["group"], "rows_side": m["rows_side"], **assignment_record(m["assignment"])}
               for m in found["matches"]]
    assignments = [m["assignment"] for m in found["matches"]]
    total = sum(len(x.rows) for x in assignments)
    summary = {"assignments": len(records), "neurons_matched": total,
               "mean_similarity": (float(sum(x.similarity.sum() for x in assignments) / total) if total else None),
               "certified_optimal": all(x.certified_optimal for x in assignments),
               "objective": float(sum(x.objective for x in assignments)),
               "bound": float(sum(x.bound for x in assignments)),
               "methods": sorted({x.method for x in assignments})}
    doc = stamp({"a": found["a"], "b": found["b"], "mode": found["mode"], "backend": engine.identity(),
                 "descriptor": "norm-folded gate rows (signed cosine), up rows and down columns (absolute summed "
                               "cosine), in the shared residual coordinates",
                 "summary": summary, "matches": records}, "match_neurons")
    written = []
    if output is not None:
        write_json(Path(output), doc)
        written.append(Path(output))
    return MatchNeuronsResult(doc, identity={engine.name: doc["backend"]},
                              input_hashes={found[k]["label"]: found[k]["content_hash"] for k in ("a", "b")},
                              written=written)


def _suite_result(doc: dict, out: Path) -> SuiteResult:
    return SuiteResult(doc, identity=doc["identity"], input_hashes={i["label"]: i["content_hash"] for i in doc["inputs"]},
                       written=[out])


def _save(doc: dict, output, report, write_report) -> list[Path]:
    """The JSON document and the report for people, each only where asked for."""
    written = []
    if output is not None:
        write_json(Path(output), doc)
        written.append(Path(output))
    if report is not None:
        write_report(Path(report), doc)
        written.append(Path(report))
    return written


__all__ = ["Result", "BackendsResult", "InspectResult", "FingerprintResult", "CompareResult", "DriftResult",
           "DriftCompareResult", "SuiteResult", "backends", "inspect", "fingerprint", "compare", "drift",
           "drift_compare", "suite", "demo", "load_or_fingerprint", "read_drift_report", "MatchNeuronsResult",
           "match_neurons"]

