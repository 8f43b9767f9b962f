"""Coverage-guided fuzzing of every reader and every document the program reads (outside CI).

Each target turns fuzzer bytes into one input and reads it the way the command line does; a
ProvenanceError is a clean refusal, anything else (or a hang past libFuzzer's -timeout) is a finding.
With atheris (pip install atheris) the fuzzing is coverage-guided (libFuzzer over instrumented
provenance code); without it, seeded random mutation of the same seeds.

    python scripts/fuzz_readers.py --seconds 600                   # every target, 600 s each
    python scripts/fuzz_readers.py --target safetensors --seconds 60

Targets: safetensors, gguf, torch, onnx (checkpoint readers), fingerprint (the document inside a
fingerprint file, its digest resealed so the document checks run), drift (drift report JSON),
config (config.json beside valid weights), tokenizer (tokenizer.json beside valid weights).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGETS = ("safetensors", "gguf", "torch", "onnx", "fingerprint", "drift", "config", "tokenizer")
CHECKPOINT_NAMES = {"safetensors": "model.safetensors", "gguf": "model.gguf", "torch": "model.bin", "onnx": "model.onnx"}


def seeds(target: str) -> list[bytes]:
    """Valid inputs of the target's kind, for the fuzzer to start from."""
    if target in CHECKPOINT_NAMES:
        from tests.test_properties import SEEDS
        return [SEEDS[CHECKPOINT_NAMES[target]]]
    if target == "fingerprint":
        return [_fingerprint_parts()[0].encode()]
    if target == "drift":
        return [(ROOT / "benchmarks" / "results" / "drift_cpu.json").read_bytes()]
    if target == "config":
        return [json.dumps({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 8,
                            "num_attention_heads": 2, "num_key_value_heads": 2}).encode()]
    return [json.dumps({"model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(40)}}}).encode()]


_FP = {}


def _fingerprint_parts():
    """(document text, tensors) of a small valid fingerprint, computed once from the corpus' tiny model."""
    if not _FP:
        from safetensors.torch import save_file

        from provenance.backends import get_backend
        from provenance.fingerprint import fingerprint_model
        from tests.hostile_corpus import valid_state
        with tempfile.TemporaryDirectory() as tmp:
            state = valid_state(hidden=16, layers=2, vocab=64)
            save_file(state, Path(tmp) / "model.safetensors")
            (Path(tmp) / "vocab.json").write_text(json.dumps({f"tok{i}": i for i in range(64)}))
            fp = fingerprint_model(Path(tmp), get_backend("cpu"), n_anchors=16, max_neurons=8)
        _FP["doc"], _FP["tensors"] = json.dumps(fp.doc), dict(fp.tensors)
    return _FP["doc"], _FP["tensors"]


def make_reader(target: str, workdir: Path):
    """A function of fuzzer bytes that reads them as the target's input (raising what the program raises)."""
    from provenance.errors import ProvenanceError  # noqa: F401 (imported under instrumentation)
    if target in CHECKPOINT_NAMES:
        from tests.test_properties import read_everything
        path = workdir / CHECKPOINT_NAMES[target]

        def read(data: bytes):
            path.write_bytes(data)
            read_everything(path)
        return read
    if target == "fingerprint":
        from safetensors.torch import save_file

        from provenance.fingerprint import load_fingerprint
        from provenance.fingerprint.integrity import DIGEST_KEY, digest
        _, tensors = _fingerprint_parts()
        path = workdir / "fp.safetensors"

        def read(data: bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return  # safetensors metadata is UTF-8 text: such bytes cannot be stored
            save_file(tensors, str(path), metadata={"provenance_fingerprint": text, DIGEST_KEY: digest(text, tensors)})
            load_fingerprint(path)
        return read
    if target == "drift":
        from provenance.api import read_drift_report
        from provenance.drift import compare_reports
        path = workdir / "drift.json"

        def read(data: bytes):
            path.write_bytes(data)
            doc = read_drift_report(path)
            compare_reports([doc, doc], ["a", "b"])
        return read
    from safetensors.torch import save_file

    from tests.hostile_corpus import valid_state
    from tests.test_properties import read_everything
    model = workdir / "model"
    model.mkdir(exist_ok=True)
    save_file(valid_state(), model / "model.safetensors")
    side = model / ("config.json" if target == "config" else "tokenizer.json")

    def read(data: bytes):
        side.write_bytes(data)
        read_everything(model)
    return read


def run_atheris(target: str, seconds: int, corpus: Path) -> int:
    import atheris
    with atheris.instrument_imports(include=["provenance"]):
        import provenance.api  # noqa: F401
        import provenance.fingerprint  # noqa: F401
        import provenance.io  # noqa: F401
    from provenance.errors import ProvenanceError
    workdir = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    read = make_reader(target, workdir)
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(target)):
        (corpus / f"seed{i}").write_bytes(seed)
    counts = {"inputs": 0, "refused": 0}

    def one(data: bytes):
        counts["inputs"] += 1
        try:
            read(data)
        except ProvenanceError:
            counts["refused"] += 1

    start = time.monotonic()
    import atexit
    atexit.register(lambda: print(f"{target}: {counts['inputs']} inputs in {time.monotonic() - start:.0f}s, "
                                  f"{counts['refused']} refused cleanly", flush=True))
    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-timeout=30", "-rss_limit_mb=2048",
                   "-max_len=65536", f"-artifact_prefix={corpus}/finding-", "-print_final_stats=1"], one)
    atheris.Fuzz()
    return 0


def run_random(target: str, seconds: int, seed: int) -> int:
    """Fallback without atheris: random byte mutations of the seeds (not coverage-guided)."""
    from provenance.errors import ProvenanceError
    from tests.test_properties import mutate
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    read, pool = make_reader(target, workdir), seeds(target)
    findings = refused = total = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        muts = [(rng.choice(("flip", "truncate", "insert", "overwrite8")), rng.randrange(10**6), rng.randrange(1, 2**63))
                for _ in range(rng.randint(1, 6))]
        muts = [(k, p, v % 256 if k in ("flip", "insert") else v) for k, p, v in muts]
        total += 1
        try:
            read(mutate(rng.choice(pool), muts))
        except ProvenanceError:
            refused += 1
        except Exception:
            findings += 1
            print(f"FINDING {target} {muts}\n{traceback.format_exc(limit=3)}", flush=True)
    print(f"{target}: {total} inputs in {time.monotonic() - start:.0f}s, {refused} refused cleanly, {findings} findings")
    return 1 if findings else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=TARGETS, help="one target (default: each in turn, in its own process)")
    ap.add_argument("--seconds", type=int, default=600, help="budget per target")
    ap.add_argument("--corpus", type=Path, default=Path(tempfile.gettempdir()) / "provenance-fuzz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random", action="store_true", help="random mutation even when atheris is installed")
    args = ap.parse_args()
    if args.target is None:
        worst = 0
        for target in TARGETS:
            cmd = [sys.executable, __file__, "--target", target, "--seconds", str(args.seconds),
                   "--corpus", str(args.corpus), "--seed", str(args.seed)] + (["--random"] if args.random else [])
            worst = max(worst, subprocess.run(cmd).returncode)
        return worst
    try:
        if args.random:
            raise ImportError
        import atheris  # noqa: F401
    except ImportError:
        return run_random(args.target, args.seconds, args.seed)
    return run_atheris(args.target, args.seconds, args.corpus / args.target)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
