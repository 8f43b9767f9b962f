"""`provenance claim verify` and `provenance claim template`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import MalformedInput
from ..terminal import check_failed, print_written, progress_wanted, say

claim_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Platform claims: which artifacts are consistent with 'model M was trained on platform P'.")


def _progress(line: str) -> None:
    say(f"claim: {line}")


@claim_app.command("verify")
def verify(claim_file: Path = typer.Argument(..., help="The claim TOML file."),
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
           report: Optional[Path] = typer.Option(None, "--report", help="Directory for a Markdown/HTML report with plots."),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="Claim JSON document to write."),
           backend: str = typer.Option("cpu", "--backend", "-b", help="Backend for fingerprinting (cpu, cuda, npu)."),
           fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when the verdict is this "
                                                 "(inconsistent, insufficient-evidence or consistent)."),
           quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr (as the top-level --quiet).")):
    """Check a claim's artifacts: consistent, inconsistent or insufficient-evidence, each check with its strength."""
    from .claimfile import parse_claim
    from .verdict import VERDICTS
    from ..outputs import refuse_outputs
    from .verify import claim_inputs, verify_claim
    if fail_on is not None and fail_on not in VERDICTS:
        raise typer.BadParameter(f"must be one of {', '.join(VERDICTS)}", param_hint="--fail-on")
    claim = parse_claim(claim_file)
    refuse_outputs([output], claim_inputs(claim), directories=[report])
    result = verify_claim(claim_file, backend, _progress if progress_wanted() and not quiet else None, claim=claim)
    if output is not None:
        from ..atomic import write_json
        write_json(output, result)
    if report is not None:
        from .report import write_claim_report
        write_claim_report(report, result)
    print_written(output, report)
    if as_json:
        typer.echo(json.dumps(result, indent=2, allow_nan=False))
    else:
        typer.echo(f"verdict: {result['verdict']}")
        for c in result["checks"]:
            typer.echo(f"  {c['name']:24} {c['result']:12} {c['strength']:6} {c['detail']}")
        typer.echo(result["statement"])
    if fail_on is not None and result["verdict"] == fail_on:
        return check_failed(f"verdict is {fail_on} (--fail-on {fail_on})")
    return 0


@claim_app.command("template")
def template(output: Path = typer.Argument(..., help="Claim file to write."),
             force: bool = typer.Option(False, "--force", help="Overwrite an existing file.")):
    """Write a commented claim template."""
    from ..atomic import write_text
    from .template import TEMPLATE
    if output.exists() and not force:
        raise MalformedInput("exists; pass --force to overwrite it", output)
    write_text(output, TEMPLATE)
    typer.echo(f"claim template written to {output}")
    return 0
