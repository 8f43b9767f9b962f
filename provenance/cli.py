"""The `provenance` command. Each command parses options, calls provenance.api, prints a table or JSON.

stdout carries a command's result (a table, or JSON with --json); stderr carries progress, where files
were written, and every refusal or failed check, each on one line.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from . import __distribution__, __version__, errors
from .claims.cli import claim_app
from .index.cli import index_app
from .terminal import PROG, STATE, check_failed, display_path, print_written, progress_wanted, say


def _lazy_module(name: str):
    """The module, executed on first attribute access (importlib's LazyLoader): `--help`, `--version`
    and every shell-completion keystroke answer without loading torch and the engines."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


api = _lazy_module("provenance.api")

VOCAB_HELP = "Tokenizer file (tokenizer.json, vocab.json, vocab.txt) for checkpoints that ship none, e.g. ONNX exports."
JSON_HELP = "Print the JSON document (see docs/SCHEMAS.md) instead of a table."
REPORT_HELP = "Directory for a Markdown/HTML report with plots."


class Verdict(str, Enum):
    derived = "derived"
    independent = "independent"
    inconclusive = "inconclusive"


def _is_backend(word: str) -> bool:
    kind, colon, index = word.partition(":")
    return kind in api.BACKENDS and (not colon or index.isdigit())


def _is_dtype(word: str) -> bool:
    return word in api.DTYPE_NAMES


# Options that accept several values after one flag (`--dtypes fp32 bf16`) or a comma list
# (`--dtypes fp32,bf16`), besides the repeated flag: command -> flag -> what a value looks like.
MULTI_VALUE_OPTIONS = {
    "drift": {"--dtypes": _is_dtype, "-d": _is_dtype, "--backends": _is_backend, "-b": _is_backend},
    "suite": {"--backends": _is_backend, "-b": _is_backend},
    "demo": {"--backends": _is_backend, "-b": _is_backend},
}


def expand_multi_values(argv: list[str]) -> list[str]:
    """`--dtypes fp32 bf16` and `--dtypes fp32,bf16` become `--dtypes fp32 --dtypes bf16`.

    A following word is taken as a further value only while it looks like one (a known dtype or
    backend name), so model paths after the option stay arguments.
    """
    command = next((a for a in argv if not a.startswith("-")), None)  # global options take no values
    if command not in MULTI_VALUE_OPTIONS:
        return argv
    table, out, i = MULTI_VALUE_OPTIONS[command], [], 0
    while i < len(argv):
        flag = argv[i]
        name, eq, inline = flag.partition("=")
        if name in table and (eq or i + 1 < len(argv)):
            values = inline.split(",") if eq else argv[i + 1].split(",")
            i += 1 if eq else 2
            while i < len(argv) and all(table[name](v) for v in argv[i].split(",")):
                values += argv[i].split(",")
                i += 1
            for v in values:
                out += [name, v]
            continue
        out.append(flag)
        i += 1
    return out


def _version(value: bool) -> None:
    if value:
        typer.echo(f"{__distribution__} {__version__}")
        raise typer.Exit()


app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Hardware-aware training-provenance verifier: was model B derived from model A (lineage), "
                       "how far do kernels drift across CPU, CUDA and Ascend NPU (drift), and one evidence "
                       "bundle with both (suite). Exit codes: "
                       + ", ".join(f"{code} {name.replace('_', ' ')}" for name, code in errors.EXIT_CODES.items()) + ".")


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="Show a traceback on errors."),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
            version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                         help="Print the distribution name and version, then exit.")):
    STATE["debug"], STATE["quiet"] = debug, quiet
    # A command is about to run: load the library now, in one piece. Left lazy, its first touch could come from
    # inside another import (torch inspects loaded modules while it imports) and find a half-initialized package.
    api.DTYPE_NAMES


def _emit(doc: dict, as_json: bool, human) -> None:
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        human(doc)


@app.command(short_help="List backends and why any is unavailable.")
def backends(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """List compute backends, whether each is available here, and why not."""
    result = api.backends()

    def human(doc):
        for r in doc["backends"]:
            state = f"available ({r['identity']['device_name']})" if r["available"] else f"unavailable: {r['reason']}"
            typer.echo(f"{r['name']:5} {state}")
    _emit(result.to_json(), as_json, human)


INSPECT_KEYS = ("format", "family", "num_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "num_experts", "vocab_size", "num_parameters", "dtypes", "content_hash")


@app.command(short_help="Facts and role map of a checkpoint, from headers.")
def inspect(model: Path = typer.Argument(..., help="Checkpoint file or directory."),
            as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
            no_hash: bool = typer.Option(False, "--no-hash", help="Skip hashing the files (faster on huge checkpoints).")):
    """Format, family, shape facts and role map of a checkpoint, read from its headers alone."""
    result = api.inspect(model, with_hashes=not no_hash)

    def human(info):
        for key in INSPECT_KEYS:
            typer.echo(f"{key:20} {info[key]}")
        typer.echo(f"{'mapped tensors':20} {len(info['roles'])}")
        unmapped = info["unmapped"]
        more = f" ({', '.join(unmapped[:5])}{', ...' if len(unmapped) > 5 else ''})" if unmapped else ""
        typer.echo(f"{'unmapped tensors':20} {len(unmapped)}{more}")
    _emit(result.to_json(), as_json, human)


class _DefaultGroup(TyperGroup):
    """A group whose first word may be left out: `provenance drift MODEL` is `provenance drift run MODEL`."""

    default_command = "run"

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


fingerprint_app = typer.Typer(cls=_DefaultGroup, rich_markup_mode=None, subcommand_metavar="MODEL -o FP | verify FP MODEL | keygen",
                              context_settings={"help_option_names": ["-h", "--help"]},
                              help="`provenance fingerprint MODEL -o FP` writes a fingerprint (short for `fingerprint run`); "
                                   "`fingerprint verify FP MODEL` checks that a fingerprint comes from those weights; "
                                   "`fingerprint keygen` makes an ed25519 key pair for --sign.")
app.add_typer(fingerprint_app, name="fingerprint", short_help="Write, verify or sign a portable fingerprint.")
SIGN_HELP = ("PEM ed25519 private key to sign the fingerprint with. A signature proves who wrote the file, "
             "not that the weights it names are the weights it came from (see `fingerprint verify`).")
TRUST_HELP = "PEM ed25519 public key, or a folder of them: fingerprint files must be signed by one of these keys."


@fingerprint_app.command("run", short_help="Write a checkpoint's portable fingerprint (the default).")
def fingerprint(model: Path = typer.Argument(..., help="Checkpoint file or directory."),
                output: Path = typer.Option(..., "--output", "-o", help="Fingerprint file to write (.safetensors)."),
                backend: str = typer.Option("cpu", "--backend", "-b", help="cpu, cuda, npu (or cuda:1 ...)."),
                label: Optional[str] = typer.Option(None, help="Name recorded in the fingerprint (default: the path's name)."),
                vocab: Optional[Path] = typer.Option(None, "--vocab", help=VOCAB_HELP),
                keep_path: bool = typer.Option(False, "--keep-path",
                                               help="Record the model's absolute local path (private use; "
                                                    "fingerprints meant for sharing leave it out)."),
                sign: Optional[Path] = typer.Option(None, "--sign", metavar="KEY", help=SIGN_HELP)):
    """Stream a checkpoint once and write its portable fingerprint, to share or compare later."""
    if not output.name.endswith(".safetensors"):
        raise typer.BadParameter("the output name must end in .safetensors", param_hint="--output")
    result = api.fingerprint(model, output, backend=backend, label=label, vocab=vocab, keep_path=keep_path,
                             progress=progress_wanted(), sign_key=sign)
    fp = result.fingerprint
    typer.echo(f"fingerprint of {display_path(model)} ({fp.num_layers} layers, {fp.settings()['n_anchors']} anchors) "
               f"written to {display_path(output)}{' (signed)' if sign else ''}")


@fingerprint_app.command("verify", short_help="Does a fingerprint come from these weights?")
def fingerprint_verify(fp: Path = typer.Argument(..., metavar="FP", help="Fingerprint file."),
                       model: Path = typer.Argument(..., help="The checkpoint it claims to come from."),
                       backend: str = typer.Option("cpu", "--backend", "-b", help="Backend for the recomputation."),
                       trust: Optional[Path] = typer.Option(None, "--trust", metavar="PUBKEY", help=TRUST_HELP),
                       as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")):
    """Recompute the fingerprint from the weights and compare a sample of its layers with the file's; also
    the files' hashes and shape facts it records. Exits 1 when the file does not match the weights."""
    result = api.verify_fingerprint(fp, model, backend=backend, trust=trust, progress=progress_wanted())

    def human(r):
        for c in r["checks"]:
            typer.echo(f"{c['check']:18} {'ok' if c['ok'] else 'MISMATCH'}  {c['detail']}")
        typer.echo(f"signed by: {r['signer'] or 'nobody (unsigned)'}")
        typer.echo(f"fingerprint {'matches' if r['match'] else 'does NOT match'} the weights")
    _emit(result, as_json, human)
    if not result["match"]:
        return check_failed(f"{display_path(fp)} does not match the weights of {display_path(model)}")
    return errors.OK


@fingerprint_app.command("keygen", short_help="Make an ed25519 key pair for --sign and --trust.")
def fingerprint_keygen(private: Path = typer.Argument(..., help="Private key file to create (PEM, mode 600; never overwritten)."),
                       public: Path = typer.Argument(..., help="Public key file to write (PEM), to hand to whoever checks.")):
    """Create an ed25519 key pair: sign fingerprints with the private key, give others the public key."""
    typer.echo(f"public key {api.generate_keys(private, public)} written to {display_path(public)}")


@app.command(short_help="Was B derived from A? A calibrated verdict.")
def compare(a: Path = typer.Argument(..., help="Model A: checkpoint or fingerprint file."),
            b: Path = typer.Argument(..., help="Model B: checkpoint or fingerprint file."),
            as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
            report: Optional[Path] = typer.Option(None, "--report", help=REPORT_HELP),
            backend: str = typer.Option("cpu", "--backend", "-b", help="Backend for fingerprinting checkpoints given directly."),
            fail_on: Optional[Verdict] = typer.Option(None, "--fail-on", case_sensitive=False,
                                                      help="Exit 1 when the verdict is this one (for CI gates)."),
            vocab: Optional[Path] = typer.Option(None, "--vocab", help=VOCAB_HELP),
            trust: Optional[Path] = typer.Option(None, "--trust", metavar="PUBKEY", help=TRUST_HELP)):
    """Was B derived from A? A verdict with calibrated evidence: derived, independent or inconclusive."""
    result = api.compare(a, b, backend=backend, vocab=vocab, report=report, progress=progress_wanted(), trust=trust)

    def human(r):
        p = "n/a" if r["p_value"] is None else f"{r['p_value']:.3g}"
        typer.echo(f"verdict: {r['verdict']}  (p = {p})")
        typer.echo(f"reason:  {r['reason']}")
        for s in r["signals"]:
            stat = "n/a" if s["statistic"] is None else f"{s['statistic']:.4f}"
            sp = "" if s["p_value"] is None else f"  p={s['p_value']:.3g}"
            typer.echo(f"  {s['name']:16} {stat}{sp}{'' if s['used'] else '  (not used)'}")
        typer.echo(f"layer map: {' '.join(f'{i}->{j}' for i, j in r['layer_map'])}")
    _emit(result.to_json(), as_json, human)
    print_written(None, report)
    if fail_on is not None and result.verdict == fail_on.value:
        return check_failed(f"verdict is {result.verdict} (--fail-on {fail_on.value})")
    return errors.OK


drift_app = typer.Typer(cls=_DefaultGroup, rich_markup_mode=None, subcommand_metavar="[MODEL]... | compare REPORT...",
                        context_settings={"help_option_names": ["-h", "--help"]},
                        help="Kernel drift against a float64 golden run. `provenance drift [MODEL...]` is short for "
                             "`provenance drift run [MODEL...]`; `provenance drift compare R1.json R2.json ...` "
                             "compares reports made on different machines.")
app.add_typer(drift_app, name="drift", short_help="Kernel drift against float64; compare machines.")
app.add_typer(claim_app, name="claim", short_help="Check a platform claim against the artifacts.")
app.add_typer(index_app, name="index", short_help="Index many fingerprints: search, tree, share.")


@drift_app.command("run", short_help="Measure drift (the default: drift [MODEL]...).")
def drift_run(models: Optional[List[Path]] = typer.Argument(None, metavar="MODEL", help="Checkpoints (default: the demo zoo).", show_default=False),
              output: Optional[Path] = typer.Option(None, "--output", "-o", help="drift.json to write."),
              backend: Optional[List[str]] = typer.Option(None, "--backends", "-b", metavar="BACKEND",
                                                          help="Backends: -b cpu cuda, -b cpu,cuda or -b cpu -b cuda "
                                                               "(default: every available one)."),
              dtype: Optional[List[str]] = typer.Option(None, "--dtypes", "-d", metavar="DTYPE",
                                                        help="fp32, bf16, fp16, as -d fp32 bf16, -d fp32,bf16 or "
                                                             "-d fp32 -d bf16 (default: all three)."),
              report: Optional[Path] = typer.Option(None, "--report", help=REPORT_HELP),
              as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Measure every kernel on every backend, dtype and precision mode against float64, and whether any
    verdict between the models flips; exits 1 if one does."""
    result = api.drift(models, backends=backend, dtypes=dtype, output=output, report=report, progress=progress_wanted())

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
    _emit(result.to_json(), as_json, human)
    print_written(output, report)
    flips = [" vs ".join(v["pair"]) for v in result.document["verdicts"] if not v["stable"]]
    if flips:
        return check_failed(f"the verdict of {flips[0]} flips under drift"
                             + (f" (and {len(flips) - 1} more)" if len(flips) > 1 else ""))
    return errors.OK


@drift_app.command("compare", short_help="Compare drift reports of different machines.")
def drift_compare(reports: List[Path] = typer.Argument(..., metavar="REPORT", help="Drift reports (drift -o); the first is the reference."),
                  output: Optional[Path] = typer.Option(None, "--output", "-o", help="Comparison JSON to write."),
                  report: Optional[Path] = typer.Option(None, "--report", help=REPORT_HELP),
                  as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Compare drift reports made on different machines: error ratios per kernel against the first report
    (up to 1 pass, 1 to 2 warn, above 2 fail) and verdict agreement; exits 1 on a failure."""
    result = api.drift_compare(reports, output=output, report=report)

    def human(r):
        for row in r["rows"]:
            ratio = "overflow" if row["ratio"] is None else f"{row['ratio']:.2f}"
            typer.echo(f"{row['kernel']:20} {row['dtype']:5} {row['mode']:6} {row['backend']}/{row['reference_backend']}"
                       f"  ratio {ratio:>8}  {row['status']}")
        for v in r["verdicts"]:
            typer.echo(f"{' vs '.join(v['pair'])}: {v['reference_verdict']} / {v['verdict']}  {'agree' if v['agree'] else 'DISAGREE'}")
        if r.get("inputs_note"):
            typer.echo(f"note: {r['inputs_note']}")
        counts = ", ".join(f"{n} {status}" for status, n in r["counts"].items())
        typer.echo(f"drift comparison: {r['status']} ({counts})")
    _emit(result.to_json(), as_json, human)
    print_written(output, report)
    if result.status == "fail":
        return check_failed(f"drift comparison failed ({result.document['counts'].get('fail', 0)} kernel rows fail)")
    return errors.OK


@app.command(short_help="Everything on the models; an evidence bundle.")
def suite(models: List[Path] = typer.Argument(..., metavar="MODEL", help="Checkpoints (files or directories)."),
          out: Path = typer.Option(..., "--out", "-o", help="Directory for the evidence bundle."),
          backend: Optional[List[str]] = typer.Option(None, "--backends", "-b", metavar="BACKEND",
                                                      help="Backends to use (default: every available one)."),
          vocab: Optional[Path] = typer.Option(None, "--vocab", help=VOCAB_HELP)):
    """Run every capability on the models across backends (inspect, fingerprint, compare every pair,
    drift) and write an evidence bundle with a report."""
    result = api.suite(models, out, backends=backend, vocab=vocab, progress=progress_wanted())
    typer.echo(f"evidence bundle written to {out} ({result.summary})")
    typer.echo(f"read {out / 'report.md'} or open {out / 'report.html'}")


@app.command(short_help="The suite on the embedded tiny-model zoo.")
def demo(out: Path = typer.Option(Path("provenance-demo"), "--out", "-o", help="Directory for the demo's evidence bundle."),
         backend: Optional[List[str]] = typer.Option(None, "--backends", "-b", metavar="BACKEND",
                                                     help="Backends to use (default: every available one)."),
         no_claims: bool = typer.Option(False, "--no-claims", help="Skip the platform-claims demo (an honest training "
                                                                   "segment and three spoofs, replayed; about a minute).")):
    """Build the embedded tiny-model zoo (trained here, no download) and run the suite on it, then the platform-claims demo."""
    result = api.demo(out, backends=backend, progress=progress_wanted(), claims=not no_claims)
    typer.echo(f"demo evidence bundle written to {out} ({result.summary})")
    typer.echo(f"read {out / 'report.md'} or open {out / 'report.html'}")


@app.command("match-neurons", short_help="Which neuron of B's MLP layer is which neuron of A's.")
def match_neurons(a: Path = typer.Argument(..., help="Model A: checkpoint file or directory."),
                  b: Path = typer.Argument(..., help="Model B: checkpoint file or directory."),
                  layer: int = typer.Option(..., "--layer", "-l", min=0, help="A's layer index."),
                  layer_b: Optional[int] = typer.Option(None, "--layer-b", min=0, help="B's layer index (default: --layer)."),
                  output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSON document to write (see docs/SCHEMAS.md)."),
                  as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
                  backend: str = typer.Option("cpu", "--backend", "-b", help="Where the similarity runs: cpu, cuda, npu (or cuda:1 ...)."),
                  candidates: Optional[int] = typer.Option(None, "--candidates", "-k", min=1,
                                                           help="Candidate columns per row on wide layers (default 16).")):
    """Match one MLP layer's neurons of B to A's by weight similarity: a permutation between dense layers, or each
    expert of a mixture-of-experts layer into a dense one. Wide layers are pruned to candidates, solved exactly on
    them and certified against the full similarity matrix; the document says which and how close."""
    result = api.match_neurons(a, b, layer, layer_b, backend=backend, output=output, candidates=candidates,
                               progress=progress_wanted())

    def human(doc):
        s = doc["summary"]
        typer.echo(f"{doc['mode']}: layer {doc['a']['layer']} of {doc['a']['label']} vs layer {doc['b']['layer']} "
                   f"of {doc['b']['label']}: {s['neurons_matched']} neurons in {s['assignments']} assignment(s), "
                   f"mean similarity {s['mean_similarity']:.4f}")
        for m in doc["matches"]:
            proof = "certified optimal" if m["certified_optimal"] else f"within {m['gap']:.3g} of optimal"
            typer.echo(f"  {m['group']:10} ({m['rows_side']}, {m['rows']} rows) {m['method']:13} "
                       f"mean {m['mean_similarity']:.4f}  {proof}")
    _emit(result.to_json(), as_json, human)
    print_written(output, None)


def _usage_error(exc: Exception) -> int:
    """typer's usage errors (they carry format_message and exit_code), on one line with where to look."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command asks for its help
        exc.show()
        return exc.exit_code
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    say(f"usage error: {' '.join(exc.format_message().split())}{where}")
    return exc.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments without the program name (default: sys.argv[1:]).
    Returns:
        The exit code (errors.py lists them).
    """
    argv = expand_multi_values(list(sys.argv[1:] if argv is None else argv))
    STATE["debug"] = "--debug" in argv
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name=PROG, standalone_mode=False)
        if rv == errors.INTERRUPTED:  # typer turns Ctrl-C into a returned 130
            say("interrupted; no partial output was written")
        return rv if isinstance(rv, int) else errors.OK
    except errors.ProvenanceError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        say(f"error: {exc}")
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        say("interrupted; no partial output was written")
        return errors.INTERRUPTED
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            return _usage_error(exc)
        # anything else is a bug: say so on one line; --debug shows where
        if STATE["debug"]:
            traceback.print_exc()
        text = " ".join(str(exc).split())[:300]
        say(f"internal error: {type(exc).__name__}: {text} (rerun with --debug for a traceback)")
        return errors.INTERNAL


def entry() -> None:
    from .interrupt import install
    install()
    sys.exit(main())


if __name__ == "__main__":
    entry()
