"""`provenance index ...`: add, search, tree, export, import. Options are parsed here; the work is in the library."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer

from .. import errors
from ..terminal import progress_wanted, say

index_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="A fingerprint index: which known model is this from? Family trees, sharing, batch fingerprinting.")
DB_HELP = "The index database (one SQLite file)."


def _echo_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, allow_nan=False))


def _query(path: Path, backend: str, vocab: Optional[Path]):
    from ..fingerprint import fingerprint_model, is_fingerprint_file, load_fingerprint
    if not path.exists():
        raise errors.InputNotFound("no such model or fingerprint", path)
    if is_fingerprint_file(path):
        return load_fingerprint(path)
    from ..backends import get_backend
    return fingerprint_model(path, get_backend(backend), label=path.name, progress=progress_wanted(), vocab_file=vocab)


@index_app.command("add")
def add(models: List[Path] = typer.Argument(None, help="Checkpoints, fingerprint files, or folders to walk for them."),
        db: Path = typer.Option(..., "--db", help=DB_HELP),
        list_file: Optional[Path] = typer.Option(None, "--list", help="A file naming one input per line."),
        base: bool = typer.Option(False, "--base", help="Record these as declared base models (known published bases)."),
        released: Optional[str] = typer.Option(None, "--released", help="Release date (ISO 8601) recorded on each new entry."),
        by: Optional[str] = typer.Option(None, "--by", help="Who is fingerprinting (recorded on each new entry)."),
        backend: str = typer.Option("cpu", "--backend", "-b", help="cpu, cuda, npu (or cuda:1 ...)."),
        workers: int = typer.Option(1, "--workers", "-j", min=1, help="Parallel fingerprinting workers."),
        threads: int = typer.Option(1, "--threads", min=1, help="Torch threads per worker."),
        scheduler: str = typer.Option("local", "--scheduler", help="local (processes here) or ray (a Ray cluster; RAY_ADDRESS)."),
        vocab: Optional[Path] = typer.Option(None, "--vocab", help="Tokenizer file for checkpoints that ship none."),
        as_json: bool = typer.Option(False, "--json")):
    """Fingerprint and index models; inputs already indexed (same content hash) are skipped, so a rerun resumes."""
    from ..outputs import refuse_outputs
    from .batch import SCHEDULERS, _is_fingerprint, add_many, collect_inputs
    from .store import Store
    if scheduler not in SCHEDULERS:
        raise typer.BadParameter(f"must be one of {', '.join(SCHEDULERS)}", param_hint="--scheduler")
    if released is not None:
        try:
            datetime.fromisoformat(released)
        except ValueError:
            raise typer.BadParameter("must be an ISO 8601 date, e.g. 2024-05-01", param_hint="--released") from None
    if not models and list_file is None:
        raise typer.BadParameter("give models, folders or --list", param_hint="MODELS")
    items = collect_inputs(list(models or []), list_file)
    refuse_outputs([db], [i for i in items if not _is_fingerprint(Path(i))])
    with Store(db, create=True) as store:
        result = add_many(store, items, backend=backend, scheduler=scheduler, workers=workers, threads=threads,
                          role="base" if base else "model", released=released, fingerprinted_by=by,
                          vocab=None if vocab is None else str(vocab), progress=progress_wanted())
        total = len(store)
    for item, error in result.failed:
        say(f"error: {error}" if item in error else f"error: {item}: {error}")
    if as_json:
        _echo_json({**result.as_dict(), "entries": total})
    else:
        typer.echo(f"{len(result.added)} added, {len(result.skipped)} already indexed, {len(result.failed)} failed; "
                   f"{total} entries in {db}")
    return result.exit_code


@index_app.command("search")
def search(model: Path = typer.Argument(..., help="The suspect model: checkpoint or fingerprint file."),
           db: Path = typer.Option(..., "--db", help=DB_HELP),
           top: int = typer.Option(10, "--top", "-k", min=0, help="Candidates confirmed with the full comparison (0: all)."),
           backend: str = typer.Option("cpu", "--backend", "-b"),
           vocab: Optional[Path] = typer.Option(None, "--vocab", help="Tokenizer file for checkpoints that ship none."),
           as_json: bool = typer.Option(False, "--json")):
    """Which indexed model is this derived from? Pre-filter every entry, confirm the top K, correct for N tests."""
    from .search import search as run_search
    from .store import Store
    with Store(db) as store:
        query = _query(model, backend, vocab)
        result = run_search(store, query, top=top, progress=progress_wanted())
    if as_json:
        _echo_json(result)
        return 0
    typer.echo(f"{model}: {result['searched']} indexed models searched, {result['confirmed']} confirmed "
               f"(pre-filter {result['prefilter_seconds'] * 1000:.1f} ms); p corrected by Holm over {result['searched']}")
    for c in result["candidates"]:
        p = "n/a" if c["p_value_corrected"] is None else f"{c['p_value_corrected']:.3g}"
        parent = {"candidate": "  (parent: the indexed model)", "query": "  (parent: the query)"}.get(c["direction"]["parent"], "")
        typer.echo(f"{c['rank']:3}. {c['name']:32} {c['verdict']:13} p_corrected={p}{parent}")
    return 0


@index_app.command("tree")
def tree(db: Path = typer.Option(..., "--db", help=DB_HELP),
         report: Optional[Path] = typer.Option(None, "--report", help="Directory for tree.json, tree.md and tree.png."),
         as_json: bool = typer.Option(False, "--json")):
    """The lineage forest of everything in the index, directed only where structure says which is the parent."""
    from .store import Store
    from .tree import build_tree
    with Store(db) as store:
        doc = build_tree(store, progress=progress_wanted())
    if report is not None:
        from .report import write_tree_report
        write_tree_report(report, doc)
    if as_json:
        _echo_json(doc)
        return 0
    typer.echo(f"{len(doc['nodes'])} models, {doc['compared']} pairs compared, {len(doc['edges'])} edges")
    for e in doc["edges"]:
        link = f"{e['parent']} -> {e['b'] if e['parent'] == e['a'] else e['a']}" if e["parent"] else f"{e['a']} -- {e['b']}"
        typer.echo(f"  {link}  (strength {e['strength']:.3f})")
    return 0


@index_app.command("export")
def export(output: Path = typer.Argument(..., help="The export file to write."),
           db: Path = typer.Option(..., "--db", help=DB_HELP),
           by: Optional[str] = typer.Option(None, "--by", help="Who exports (recorded in the file).")):
    """Write the index as one shareable file (fingerprints and metadata, no weights, no local paths)."""
    from .exchange import export_index
    from .store import Store
    with Store(db) as store:
        manifest = export_index(store, output, exported_by=by, progress=progress_wanted())
    typer.echo(f"{len(manifest['entries'])} entries exported to {output}")
    return 0


@index_app.command("import")
def import_(file: Path = typer.Argument(..., help="An index export file."),
            db: Path = typer.Option(..., "--db", help=DB_HELP),
            as_json: bool = typer.Option(False, "--json")):
    """Import an export file; refused whole if any fingerprint fails validation. Keeps the exporter's identity."""
    from .exchange import import_index, read_export
    from .store import Store
    prepared = read_export(file, progress=progress_wanted())  # the whole file is checked before the database is touched
    with Store(db, create=True) as store:
        result = import_index(store, file, prepared)
    if as_json:
        _echo_json(result)
    else:
        typer.echo(f"{len(result['imported'])} imported, {len(result['skipped'])} already indexed, "
                   f"exported by {result['exporter'].get('exported_by') or 'unnamed'} at {result['exporter'].get('exported_at')}")
    return 0
