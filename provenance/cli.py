"""The `provenance` command. Each command parses options, calls the library, prints a table or JSON."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import List, Optional

import typer

from . import errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hardware-aware training-provenance verifier: lineage, drift and platform claims from weights.")
STATE = {"debug": False, "quiet": False}


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="Show a traceback on errors."),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr.")):
    STATE["debug"], STATE["quiet"] = debug, quiet


def _emit(obj, as_json: bool, human) -> None:
    if as_json:
        typer.echo(json.dumps(obj, indent=2))
    else:
        human(obj)


from .index.cli import index_app  # noqa: E402
app.add_typer(index_app, name="index")


@app.command()
def backends(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List compute backends, whether each is available, and why not."""
    from backends import describe_backends
    rows = describe_backends()

    def human(rows):
        for r in rows:
            state = "available" if r["available"] else f"unavailable: {r['reason']}"
            name = f" ({r['identity']['device_name']})" if r["available"] else ""
            typer.echo(f"{r['name']:5} {state}{name}")
    _emit(rows, as_json, human)


@app.command()
def inspect(model: Path = typer.Argument(..., help="Checkpoint file or directory."),
            as_json: bool = typer.Option(False, "--json"),
            no_hash: bool = typer.Option(False, "--no-hash", help="Skip hashing the files (faster on huge checkpoints).")):
    """Format, family, shape facts and role map of a checkpoint, from headers alone."""
    from .model import inspect_model
    info = inspect_model(model, with_hashes=not no_hash)

    def human(info):
        for key in ("format", "family", "num_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                    "intermediate_size", "num_experts", "vocab_size", "num_parameters", "dtypes", "content_hash"):
            typer.echo(f"{key:20} {info[key]}")
        typer.echo(f"{'mapped tensors':20} {len(info['roles'])}")
        typer.echo(f"{'unmapped tensors':20} {len(info['unmapped'])}" +
                   (f" ({', '.join(info['unmapped'][:5])}{', ...' if len(info['unmapped']) > 5 else ''})" if info["unmapped"] else ""))
    _emit(info, as_json, human)


def _backend(name: str):
    from backends import get_backend
    return get_backend(name)


VOCAB_HELP = "Tokenizer file (tokenizer.json, vocab.json, vocab.txt) for checkpoints that ship none, e.g. ONNX exports."


def _load_or_fingerprint(path: Path, backend, label: str, vocab: Path | None = None):
    from .fingerprint import fingerprint_model, is_fingerprint_file, load_fingerprint
    if is_fingerprint_file(path):
        return load_fingerprint(path)
    return fingerprint_model(path, backend, label=label, progress=not STATE["quiet"], vocab_file=vocab)


@app.command()
def fingerprint(model: Path = typer.Argument(..., help="Checkpoint file or directory."),
                output: Path = typer.Option(..., "--output", "-o", help="Fingerprint file to write (.safetensors)."),
                backend: str = typer.Option("cpu", "--backend", "-b", help="cpu, cuda, npu (or cuda:1 ...)."),
                label: Optional[str] = typer.Option(None, help="Name recorded in the fingerprint (default: the path's name)."),
                vocab: Optional[Path] = typer.Option(None, "--vocab", help=VOCAB_HELP)):
    """Stream a checkpoint once and write its portable fingerprint."""
    from .fingerprint import fingerprint_model
    from .suite import refuse_model_dirs
    if not output.name.endswith(".safetensors"):
        raise typer.BadParameter("the output name must end in .safetensors", param_hint="--output")
    refuse_model_dirs(output.parent, [str(model)])
    fp = fingerprint_model(model, _backend(backend), label=label or model.name, progress=not STATE["quiet"], vocab_file=vocab)
    fp.save(output)
    typer.echo(f"fingerprint of {model} ({fp.num_layers} layers, {fp.doc['settings']['n_anchors']} anchors) written to {output}")


@app.command()
def compare(a: Path = typer.Argument(..., help="Model A: checkpoint or fingerprint file."),
            b: Path = typer.Argument(..., help="Model B: checkpoint or fingerprint file."),
            as_json: bool = typer.Option(False, "--json"),
            report: Optional[Path] = typer.Option(None, "--report", help="Directory for a Markdown/HTML report with plots."),
            backend: str = typer.Option("cpu", "--backend", "-b", help="Backend for fingerprinting checkpoints given directly."),
            fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when the verdict is this (derived, independent or inconclusive)."),
            vocab: Optional[Path] = typer.Option(None, "--vocab", help=VOCAB_HELP)):
    """Was B derived from A? A verdict with calibrated evidence: derived, independent or inconclusive."""
    from .lineage import compare_fingerprints
    if fail_on is not None and fail_on not in ("derived", "independent", "inconclusive"):
        raise typer.BadParameter("must be derived, independent or inconclusive", param_hint="--fail-on")
    from .fingerprint import is_fingerprint_file
    _refuse_targets(None, report, [str(p) for p in (a, b) if not is_fingerprint_file(p)])
    engine = _backend(backend)
    fa = _load_or_fingerprint(a, engine, a.name, vocab)
    fb = _load_or_fingerprint(b, engine, b.name, vocab)
    result = compare_fingerprints(fa, fb)
    result["backend"] = engine.identity()
    if report is not None:
        from .report.lineage import write_comparison_report
        write_comparison_report(report, result, fa, fb)

    def human(r):
        p = "n/a" if r["p_value"] is None else f"{r['p_value']:.3g}"
        typer.echo(f"verdict: {r['verdict']}  (p = {p})")
        typer.echo(f"reason:  {r['reason']}")
        for s in r["signals"]:
            stat = "n/a" if s["statistic"] is None else f"{s['statistic']:.4f}"
            sp = "" if s["p_value"] is None else f"  p={s['p_value']:.3g}"
            typer.echo(f"  {s['name']:16} {stat}{sp}{'' if s['used'] else '  (not used)'}")
        typer.echo(f"layer map: {' '.join(f'{i}->{j}' for i, j in r['layer_map'])}")
    _emit(result, as_json, human)
    if fail_on is not None and result["verdict"] == fail_on:
        return errors.CHECK_FAILED
    return 0


@app.command()
def drift(args: Optional[List[str]] = typer.Argument(None, help="MODEL... (default: the demo zoo), or: compare R1.json R2.json ..."),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="drift.json to write (drift) / comparison JSON (drift compare)."),
          backend: Optional[List[str]] = typer.Option(None, "--backends", "-b", help="Backends (default: every available one)."),
          dtype: Optional[List[str]] = typer.Option(None, "--dtypes", "-d", help="fp32, bf16, fp16 (default: all three)."),
          report: Optional[Path] = typer.Option(None, "--report", help="Directory for a Markdown/HTML report with plots."),
          as_json: bool = typer.Option(False, "--json")):
    """Measure kernel drift against a float64 golden run on every backend, dtype and precision mode;
    or, as `drift compare R1.json R2.json ...`, compare reports made on different machines."""
    args = list(args or [])
    if args and args[0] == "compare":
        return _drift_compare([Path(a) for a in args[1:]], output, report, as_json)
    from .drift import run_drift
    if args:
        models, labels = args, [Path(a).name for a in args]
        _refuse_targets(output, report, models)
    else:
        from .zoo import build_many
        labels = ["base-s0", "base-s0-finetune", "base-s0-obfuscate", "base-s1"]
        models = [str(p) for p in build_many(labels).values()]
    if len(models) == 1:
        models, labels = models * 2, [labels[0], labels[0] + "-again"]
    result = run_drift(models, labels, backend, dtype or ["fp32", "bf16", "fp16"], progress=not STATE["quiet"])
    from .report.drift import write_drift_report
    _save(result, output, report, write_drift_report)

    def human(r):
        for row in r["rows"]:
            err = "overflow" if row["median_rel_err"] is None else f"{row['median_rel_err']:.2e}"
            mx = "overflow" if row["max_rel_err"] is None else f"{row['max_rel_err']:.2e}"
            typer.echo(f"{row['kernel']:20} {row['backend']:26} {row['dtype']:5} {row['mode']:12}"
                       f"{'+det' if row['deterministic_algorithms'] else '    '} median {err}  max {mx}"
                       f"{'' if row['deterministic'] else '  NOT REPEATABLE'}")
        for v in r["verdicts"]:
            m = "n/a" if v["margin_to_drift"] is None else (
                "unbounded (no measurable drift)" if v.get("drift_at_floor") else f"{v['margin_to_drift']:.3g}")
            typer.echo(f"{' vs '.join(v['pair'])}: {v['verdict']}, {'stable' if v['stable'] else 'FLIPS'}, margin/drift {m}")
    _emit(result, as_json, human)
    return 0 if all(v["stable"] for v in result["verdicts"]) else errors.CHECK_FAILED


def _refuse_targets(output: Path | None, report: Path | None, models) -> None:
    """Checked before any work: outputs never go inside a model directory."""
    from .suite import refuse_model_dirs
    for target in (output.parent if output is not None else None, report):
        if target is not None:
            refuse_model_dirs(target, list(models))


def _save(result: dict, output: Path | None, report: Path | None, write_report) -> None:
    """The JSON document and the report for people, each only where asked for."""
    from .atomic import write_json
    if output is not None:
        write_json(output, result)
    if report is not None:
        write_report(report, result)


def _drift_compare(paths: list[Path], output, report, as_json):
    from .drift import compare_reports
    from .io.base import read_json_file
    reports = []
    for p in paths:
        if not p.is_file():
            raise errors.InputNotFound("no such drift report", p)
        doc = read_json_file(p)
        if not isinstance(doc, dict) or "rows" not in doc or "inputs" not in doc:
            raise errors.MalformedInput("not a drift report", p)
        reports.append(doc)
    result = compare_reports(reports, [str(p) for p in paths])
    from .report.drift import write_drift_comparison
    _save(result, output, report, write_drift_comparison)

    def human(r):
        for row in r["rows"]:
            ratio = "overflow" if row["ratio"] is None else f"{row['ratio']:.2f}"
            typer.echo(f"{row['kernel']:20} {row['dtype']:5} {row['mode']:6} {row['backend']}/{row['reference_backend']}"
                       f"  ratio {ratio:>8}  {row['status']}")
        for v in r["verdicts"]:
            typer.echo(f"{' vs '.join(v['pair'])}: {v['reference_verdict']} / {v['verdict']}  {'agree' if v['agree'] else 'DISAGREE'}")
        typer.echo(f"drift comparison: {r['status']} {r['counts']}")
    _emit(result, as_json, human)
    return errors.CHECK_FAILED if result["status"] == "fail" else 0


@app.command()
def suite(models: List[Path] = typer.Argument(..., help="Checkpoints (files or directories)."),
          out: Path = typer.Option(..., "--out", "-o", help="Directory for the evidence bundle."),
          backend: Optional[List[str]] = typer.Option(None, "--backends", "-b", help="Backends to use (default: every available one)."),
          vocab: Optional[Path] = typer.Option(None, "--vocab", help=VOCAB_HELP)):
    """Run every verification capability on the models across backends; write an evidence bundle."""
    from .suite import run_suite
    result = run_suite([str(m) for m in models], out, backend_names=backend, progress=not STATE["quiet"], vocab_file=vocab)
    typer.echo(f"evidence bundle written to {out} ({result['summary']})")


@app.command()
def demo(out: Path = typer.Option(Path("provenance-demo"), "--out", "-o", help="Directory for the demo's evidence bundle."),
         backend: Optional[List[str]] = typer.Option(None, "--backends", "-b")):
    """Build the embedded tiny-model zoo (no download) and run the suite on it."""
    from .suite import run_demo
    result = run_demo(out, backend_names=backend, progress=not STATE["quiet"])
    typer.echo(f"demo evidence bundle written to {out} ({result['summary']})")
    typer.echo(f"read {out / 'report.md'} or open {out / 'report.html'}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    STATE["debug"] = "--debug" in argv
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="provenance", standalone_mode=False)
        if rv == errors.INTERRUPTED:  # typer turns Ctrl-C into a returned 130
            print("provenance: interrupted; no partial output was written", file=sys.stderr)
        return rv if isinstance(rv, int) else 0
    except errors.ProvenanceError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        print(f"provenance: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("provenance: interrupted; no partial output was written", file=sys.stderr)
        return errors.INTERRUPTED
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # typer's usage errors
            exc.show()
            return errors.USAGE
        # anything else is a bug: say so on one line; --debug shows where
        if STATE["debug"]:
            traceback.print_exc()
        text = " ".join(str(exc).split())[:300]
        print(f"provenance: internal error: {type(exc).__name__}: {text} (rerun with --debug for a traceback)", file=sys.stderr)
        return errors.INTERNAL


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
