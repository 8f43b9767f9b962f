"""Batch indexing: fingerprint many checkpoints in parallel, one writer to the index, resumable.

The same function (fingerprint_one) runs in worker processes on this machine (concurrent.futures)
or as Ray tasks on a cluster (the optional `ray` extra). Workers never touch the database: they
return fingerprint bytes, and this process validates and inserts each in its own transaction, so a
killed run keeps every entry committed before it and nothing half-written. Inputs whose content
hash is already indexed are skipped before fingerprinting, so running the same command again
resumes where a killed run stopped.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import INTERNAL, InputNotFound, MalformedInput, ProvenanceError, Unsupported
from ..progress import Progress
from .store import Store, fingerprint_bytes, fingerprint_from_bytes

SCHEDULERS = ("local", "ray")
MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx")
MODEL_MARKERS = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass
class BatchResult:
    """What an `index add` run did: counts, and one line per input that failed."""
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    exit_code: int = 0  # the first failure's documented exit code

    def fail(self, item: str, error: str, code: int) -> None:
        """Record a failed input; the first failure's exit code becomes the batch's.

        Args:
            item: the input.
            error: its one-line error.
            code: its documented exit code.
        """
        self.failed.append((item, error))
        self.exit_code = self.exit_code or code

    def as_dict(self) -> dict:
        """The result as `index add --json` prints it.

        Returns:
            {"added", "skipped", "failed": [{"input", "error"}]}.
        """
        return {"added": self.added, "skipped": self.skipped, "failed": [{"input": i, "error": e} for i, e in self.failed]}


# --- inputs -----------------------------------------------------------------------------------------

def _is_fingerprint(path: Path) -> bool:
    from ..fingerprint import is_fingerprint_file
    return is_fingerprint_file(path)


def _is_model_dir(path: Path) -> bool:
    if any((path / m).is_file() for m in MODEL_MARKERS):
        return True
    return any(p.suffix in MODEL_SUFFIXES and p.is_file() and not _is_fingerprint(p) for p in path.iterdir())


def collect_inputs(paths: list[Path], list_file: Path | None = None) -> list[str]:
    """Expand the command line into single inputs: fingerprint files, checkpoint files and model directories.

    A directory that holds a checkpoint (config.json, an index file or weight files) is one model;
    any other directory is walked, and each model directory or fingerprint file found under it is an
    input. A list file names one path per line (blank lines and lines starting with # ignored),
    relative paths taken from the list file's folder.

    Args:
        paths: paths as given on the command line.
        list_file: a file naming one input per line, or None.
    Returns:
        Inputs as strings, in order, each once.
    """
    items: list[Path] = list(paths)
    if list_file is not None:
        if not list_file.is_file():
            raise InputNotFound("no such list file", list_file)
        try:
            lines = list_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise MalformedInput("list file is not UTF-8 text", list_file) from None
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                items.append(p if p.is_absolute() else list_file.parent / p)
    out: list[str] = []
    for item in items:
        if not item.exists():
            raise InputNotFound("no such model or fingerprint", item)
        out.extend(str(p) for p in _expand(item))
    return list(dict.fromkeys(out))


def _expand(path: Path):
    if path.is_file():
        yield path
        return
    if _is_model_dir(path):
        yield path
        return
    for root, dirs, files in os.walk(path, followlinks=False):
        root_path = Path(root)
        dirs.sort()
        if root_path != path and _is_model_dir(root_path):
            dirs.clear()  # a model directory is one input; its subfolders are not walked
            yield root_path
            continue
        for name in sorted(files):
            if name.endswith(".safetensors") and _is_fingerprint(root_path / name):
                yield root_path / name


# --- the work function --------------------------------------------------------------------------------

def fingerprint_one(item: str, backend_name: str, known: frozenset[str], threads: int = 1, vocab: str | None = None) -> dict:
    """Fingerprint one input (or read a fingerprint file), unless its content hash is already known.

    Runs in a worker process or a Ray task: touches no database and raises nothing; errors come back
    as one line. Torch runs on `threads` threads so that every scheduler computes the same bits.

    Args:
        item: a checkpoint or fingerprint path.
        backend_name: the backend to fingerprint on.
        known: content hashes already indexed (skipped without fingerprinting).
        threads: torch threads.
        vocab: a tokenizer file for checkpoints that ship none, or None.
    Returns:
        {"input", "status": "added" | "skipped" | "failed", "content_hash"?, "data"? (fingerprint bytes),
         "label"?, "error"?}
    """
    import torch
    torch.set_num_threads(threads)
    path = Path(item)
    try:
        if _is_fingerprint(path):
            from ..fingerprint import load_fingerprint
            fp = load_fingerprint(path)
            content_hash = fp.model()["content_hash"]
            if content_hash in known:
                return {"input": item, "status": "skipped", "content_hash": content_hash}
            return {"input": item, "status": "added", "content_hash": content_hash, "data": path.read_bytes(),
                    "label": fp.model().get("label")}
        from ..backends import get_backend
        from ..fingerprint import fingerprint_view
        from ..model import open_model
        view = open_model(path)
        try:
            content_hash = view.source.content_hash()  # hashes are cached: the fingerprint reuses them
            if content_hash in known:
                return {"input": item, "status": "skipped", "content_hash": content_hash}
            label = _label(path)
            fp = fingerprint_view(view, get_backend(backend_name), label=label, vocab_file=vocab)
        finally:
            view.source.close()
        return {"input": item, "status": "added", "content_hash": content_hash, "data": fingerprint_bytes(fp), "label": label}
    except ProvenanceError as exc:
        return {"input": item, "status": "failed", "error": str(exc), "exit_code": exc.exit_code}
    except Exception as exc:  # a bug or an unreadable file: one line, the run goes on
        return {"input": item, "status": "failed", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                "exit_code": INTERNAL}


def _label(path: Path) -> str:
    """The model's name: its folder (or file stem), and the folder above generic names like model/."""
    name = path.name if path.is_dir() else path.stem
    if name.lower() in ("model", "models", "checkpoint", "weights", "final") and path.parent.name:
        return f"{path.parent.name}-{name}"
    return name


# --- schedulers ---------------------------------------------------------------------------------------

def _local(items, backend, known, workers, threads, vocab):
    if workers <= 1:
        for item in items:
            yield fingerprint_one(item, backend, known, threads, vocab)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fingerprint_one, item, backend, known, threads, vocab) for item in items]
        for future in as_completed(futures):
            yield future.result()


def ray_available() -> tuple[bool, str]:
    """Whether Ray can run the batch here.

    Returns:
        (True, "") or (False, why not).
    """
    try:
        import ray  # noqa: F401
    except ImportError:
        return False, "Ray is not installed (pip install 'provenance[ray]')"
    return True, ""


def _ray(items, backend, known, workers, threads, vocab):
    ok, why = ray_available()
    if not ok:
        raise Unsupported(why)
    import ray
    started = not ray.is_initialized()
    if started and os.environ.get("RAY_ADDRESS"):  # a running cluster: its own resources decide the parallelism
        ray.init(log_to_driver=False)
    elif started:  # otherwise a local Ray instance with `workers` CPUs
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(fingerprint_one)
        known_ref = ray.put(known)
        pending = [task.remote(item, backend, known_ref, threads, vocab) for item in items]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


RUNNERS = {"local": _local, "ray": _ray}


def add_many(store: Store, items: list[str], *, backend: str = "cpu", scheduler: str = "local", workers: int = 1,
             threads: int = 1, role: str = "model", released: str | None = None, fingerprinted_by: str | None = None,
             vocab: str | None = None, progress: bool = False) -> BatchResult:
    """Fingerprint and index many inputs; this process is the only writer.

    Args:
        store: the open index.
        items: inputs from collect_inputs.
        backend: compute backend name for fingerprinting (each worker opens its own).
        scheduler: 'local' (worker processes here) or 'ray'.
        workers: parallel workers (local: processes; ray: CPUs of a local instance).
        threads: torch threads per worker.
        role, released, fingerprinted_by: metadata recorded on every new entry.
        vocab: tokenizer file for checkpoints that ship none.
        progress: progress lines on stderr.
    Returns:
        A BatchResult. Inputs already indexed are skipped; failed inputs are listed, the rest still indexed.
    """
    if scheduler not in RUNNERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, not {scheduler!r}")
    from .. import __version__
    known = frozenset(store.hashes())
    origin = store.origin("local", {"tool": "provenance", "tool_version": __version__, "fingerprinted_by": fingerprinted_by})
    result = BatchResult()
    tracker = Progress(len(items), "index add", progress)
    for out in RUNNERS[scheduler](items, backend, known, workers, threads, vocab):
        item = out["input"]
        if out["status"] == "failed":
            result.fail(item, out["error"], out["exit_code"])
        elif out["status"] == "skipped":
            result.skipped.append(item)
        else:
            try:
                fp = fingerprint_from_bytes(out["data"], item)
                inserted = store.add(fp, origin_id=origin, role=role, source=item, released=released,
                                     fingerprinted_by=fingerprinted_by, name=out.get("label"), data=out["data"])
            except ProvenanceError as exc:
                result.fail(item, str(exc), exc.exit_code)
                inserted = None
            if inserted:
                result.added.append(item)
            elif inserted is False:  # the same model given twice in one run
                result.skipped.append(item)
        tracker.step(f"{out['status']} {Path(item).name}")
    return result
