"""Hostile inputs, second corpus: readers, documents, limits, special files, pickles, forged fingerprints,
degenerate weights, outputs and terminal text.

Each case: (name, group, builder, expected exit code). A builder gets an empty folder `d` (inputs go
under d / "in", outputs may go under d / "out") and returns the command line (without the program name).
Every case is run in its own process by tests/test_hostile2.py.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from provenance.fingerprint.record import tensor_key

from .hostile_corpus import _Code, _gguf_bytes, valid_state

OK, CHECK, USAGE, NOT_FOUND, MALFORMED, UNSAFE, UNSUPPORTED = 0, 1, 2, 3, 4, 5, 6
ROOT = Path(__file__).resolve().parents[1]
DRIFT_REPORT = ROOT / "benchmarks" / "results" / "drift_cpu.json"
CASES: list[tuple[str, str, object, int]] = []


def case(name: str, group: str, code: int):
    def register(fn):
        CASES.append((name, group, fn, code))
        return fn
    return register


def _in(d: Path) -> Path:
    (d / "in").mkdir(exist_ok=True)
    return d / "in"


def zoo_model(d: Path, name: str = "base-s0", edit=None) -> Path:
    """A copy of a zoo model (trained here, cached), its weights optionally edited."""
    from provenance.zoo import build
    target = _in(d) / name
    shutil.copytree(build(name), target)
    if edit is not None:
        from safetensors.torch import load_file
        state = load_file(target / "model.safetensors")
        edit(state)
        save_file(state, target / "model.safetensors")
    return target


def tiny(d: Path, state=None, name="model.safetensors") -> Path:
    save_file(state if state is not None else valid_state(), _in(d) / name)
    return _in(d) / name


# --- 1. readers read what the format's library reads -------------------------------------------------
@case("bin-deflated-control", "reader", OK)
def _(d):
    p = _in(d) / "pytorch_model.bin"
    torch.save(valid_state(), d / "stored.bin")
    with zipfile.ZipFile(d / "stored.bin") as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zout:
        for i in zin.infolist():
            zout.writestr(i.filename, zin.read(i.filename))
    (d / "stored.bin").unlink()
    return ["inspect", str(p)]


@case("both-formats-differ", "reader", OK)
def _(d):
    tiny(d)
    torch.save({k: v * 2 for k, v in valid_state().items()}, _in(d) / "pytorch_model.bin")
    return ["inspect", str(_in(d))]


# --- 2. documents validated before use ------------------------------------------------------------------
def _fp_doc_case(name, doc_fn=None, tensor_fn=None, reseal=True):
    @case(name, "document", MALFORMED)
    def build(d):
        from provenance.fingerprint.integrity import DIGEST_KEY, digest
        src = _in(d) / "good.safetensors"
        from provenance.cli import main
        assert main(["--quiet", "fingerprint", str(zoo_model(d)), "-o", str(src)]) == 0
        with safe_open(str(src), "pt") as fh:
            meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
        doc = json.loads(meta["provenance_fingerprint"])
        text = json.dumps(doc_fn(doc) if doc_fn else doc)
        if tensor_fn:
            tensor_fn(tensors)
        meta["provenance_fingerprint"] = text
        if reseal:  # the digest recomputed, so the document checks themselves are exercised
            meta[DIGEST_KEY] = digest(text, tensors)
        out = _in(d) / f"{name}.safetensors"
        save_file(tensors, str(out), metadata=meta)
        shutil.rmtree(_in(d) / "base-s0")
        return ["compare", str(out), str(out)]


def _set(path, value):
    def fn(doc):
        node = doc
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return doc
    return fn


def _drop(key):
    def fn(doc):
        del doc[key]
        return doc
    return fn


_fp_doc_case("fp-doc-is-a-list", doc_fn=lambda doc: [doc])
_fp_doc_case("fp-doc-no-layers", doc_fn=_drop("layers"))
_fp_doc_case("fp-doc-no-anchors", doc_fn=_drop("anchors"))
_fp_doc_case("fp-doc-zero-layers", doc_fn=_set(["layers"], []))
_fp_doc_case("fp-doc-3000-layers", doc_fn=lambda doc: {**doc, "layers": doc["layers"] * 750})
_fp_doc_case("fp-gram-wrong-size", tensor_fn=lambda t: t.__setitem__(tensor_key("gram.q", 0), torch.ones(3, 3)))
_fp_doc_case("fp-nan-in-one-layer", tensor_fn=lambda t: t[tensor_key("gram.k", 1)].__setitem__((0, 0), float("nan")))
_fp_doc_case("fp-sigma-a-string", doc_fn=lambda doc: (doc["layers"][0].__setitem__("sigma", "big"), doc)[1])
# forged without resealing: the digest refuses them
_fp_doc_case("fp-claims-other-hash", doc_fn=_set(["model", "content_hash"], "ab" * 32), reseal=False)
_fp_doc_case("fp-tensors-zeroed", tensor_fn=lambda t: [v.zero_() for v in t.values()], reseal=False)
_fp_doc_case("fp-layer-count-lies", doc_fn=lambda doc: (doc["layers"].pop(), doc)[1], reseal=False)


def _drift_case(name, edit, text=None):
    @case(name, "document", MALFORMED)
    def build(d):
        doc = json.loads(DRIFT_REPORT.read_text())
        p = _in(d) / "drift.json"
        p.write_text(text(doc) if text else json.dumps(edit(doc)))
        return ["drift", "compare", str(DRIFT_REPORT), str(p)]


_drift_case("drift-missing-rows", _drop("rows"))
_drift_case("drift-rows-a-string", _set(["rows"], "many"))
_drift_case("drift-error-a-string", lambda doc: (doc["rows"][0].__setitem__("max_rel_err", "0.1"), doc)[1])
_drift_case("drift-negative-error", lambda doc: (doc["rows"][0].__setitem__("max_rel_err", -1.0), doc)[1])
_drift_case("drift-infinite-error", None, text=lambda doc: json.dumps(doc).replace('"max_rel_err": ', '"max_rel_err": 1e999, "x": ', 1))
_drift_case("drift-nan-error", None, text=lambda doc: json.dumps(doc).replace('"median_rel_err": ', '"median_rel_err": NaN, "y": ', 1))
_drift_case("drift-200k-rows", lambda doc: {**doc, "rows": [{}] * 200_000})


@case("config-nan", "document", MALFORMED)
def _(d):
    tiny(d)
    (_in(d) / "config.json").write_text('{"model_type": "llama", "rope_theta": NaN}')
    return ["inspect", str(_in(d))]


@case("tokenizer-2M-ids", "document", MALFORMED)
def _(d):
    tiny(d)
    (_in(d) / "config.json").write_text('{"model_type": "llama"}')
    (_in(d) / "vocab.json").write_text(json.dumps({"a": 0, "b": 2_000_000}))
    return ["inspect", str(_in(d))]


# --- 3. limits, special files, pickles ------------------------------------------------------------------
@case("layer-index-1e9", "limits", MALFORMED)
def _(d):
    state = valid_state()
    state["model.layers.1000000000.self_attn.q_proj.weight"] = torch.ones(8, 8)
    tiny(d, state)
    return ["inspect", str(_in(d) / "model.safetensors")]


@case("header-300k-tensors", "limits", MALFORMED)
def _(d):
    header = {f"t{i}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]} for i in range(300_000)}
    raw = json.dumps(header).encode()
    p = _in(d) / "model.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return ["inspect", str(p)]


@case("gguf-4M-token-claim", "limits", MALFORMED)
def _(d):
    blob = bytearray(_gguf_bytes())
    # append one more KV: an array of 4M strings, declared but never stored
    key = b"tokenizer.ggml.tokens"
    extra = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 4_000_000)
    n_kv_at = 16
    n_kv = struct.unpack_from("<Q", blob, n_kv_at)[0]
    struct.pack_into("<Q", blob, n_kv_at, n_kv + 1)
    start = 24
    p = _in(d) / "model.gguf"
    p.write_bytes(bytes(blob[:start]) + extra + bytes(blob[start:]))
    return ["inspect", str(p)]


@case("onnx-shared-output", "limits", MALFORMED)
def _(d):
    import numpy as np
    from onnx import helper, numpy_helper
    inits = [numpy_helper.from_array(np.ones((4, 4), np.float32), f"w{i}") for i in range(50)]
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], ["y"]) for i in range(50)]
    graph = helper.make_graph(nodes, "g", [], [], inits)
    p = _in(d) / "model.onnx"
    p.write_bytes(helper.make_model(graph).SerializeToString())
    return ["inspect", str(p)]


@case("index-20k-shards", "limits", MALFORMED)
def _(d):
    tiny(d)
    wm = {f"t{i}": f"shard-{i}.safetensors" for i in range(20_000)}
    (_in(d) / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    return ["inspect", str(_in(d))]


@case("vocab-txt-huge-sparse", "limits", MALFORMED)
def _(d):
    tiny(d)
    (_in(d) / "config.json").write_text('{"model_type": "llama"}')
    with open(_in(d) / "vocab.txt", "wb") as fh:
        fh.truncate(200 << 20)  # sparse: 200 MB claimed, nothing on disk
    return ["inspect", str(_in(d))]


@case("fifo-as-model-file", "special", MALFORMED)
def _(d):
    os.mkfifo(_in(d) / "model.safetensors")
    return ["inspect", str(_in(d) / "model.safetensors")]


@case("fifo-as-config", "special", MALFORMED)
def _(d):
    tiny(d)
    os.mkfifo(_in(d) / "config.json")
    return ["inspect", str(_in(d))]


@case("fifo-as-tokenizer", "special", MALFORMED)
def _(d):
    tiny(d)
    (_in(d) / "config.json").write_text('{"model_type": "llama"}')
    os.mkfifo(_in(d) / "tokenizer.json")
    return ["inspect", str(_in(d))]


@case("dev-zero-as-checkpoint", "special", MALFORMED)
def _(d):
    return ["inspect", "/dev/zero"]


@case("symlink-loop", "special", NOT_FOUND)
def _(d):
    os.symlink("loop.safetensors", _in(d) / "loop.safetensors")
    return ["inspect", str(_in(d) / "loop.safetensors")]


@case("shard-named-dot", "special", MALFORMED)
def _(d):
    tiny(d)
    (_in(d) / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "."}}))
    return ["inspect", str(_in(d))]


@case("directory-as-config", "special", MALFORMED)
def _(d):
    tiny(d)
    (_in(d) / "config.json").mkdir()
    return ["inspect", str(_in(d))]


def _torch_zip_with(d: Path, pkl: bytes, compression=zipfile.ZIP_STORED) -> Path:
    p = _in(d) / "pytorch_model.bin"
    torch.save({"w": torch.ones(2)}, p)
    with zipfile.ZipFile(p) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    key = next(n for n in entries if n.endswith("data.pkl"))
    entries[key] = pkl
    with zipfile.ZipFile(p, "w", compression) as zf:
        for n, b in entries.items():
            zf.writestr(n, b)
    return p


@case("pickle-self-referencing-dict", "pickle", UNSUPPORTED)  # read once, cycle skipped: no model family in it
def _(d):
    a: dict = {}
    a["self"] = a
    a["w"] = torch.ones(2)
    p = _in(d) / "pytorch_model.bin"
    torch.save(a, p)
    return ["inspect", str(p)]


@case("pickle-dict-dag-bomb", "pickle", UNSUPPORTED)  # each dict walked once: one tensor, no model family
def _(d):
    node: dict = {"w": torch.ones(2)}
    for _ in range(60):  # 2**60 paths through 60 dicts
        node = {"a": node, "b": node}
    p = _in(d) / "pytorch_model.bin"
    torch.save(node, p)
    return ["inspect", str(p)]


@case("pickle-zip-bomb", "pickle", MALFORMED)
def _(d):
    # a data.pkl of 400 MB of one byte, deflated to about 400 KB
    big = b"\x80\x02" + b"N" * (400 << 20) + b"."
    return ["inspect", str(_torch_zip_with(d, big, zipfile.ZIP_DEFLATED))]


@case("pickle-stride-zero", "pickle", MALFORMED)
def _(d):
    p = _in(d) / "pytorch_model.bin"
    torch.save({"w": torch.ones(1, 64).expand(64, 64)}, p)
    return ["inspect", str(p)]


@case("pickle-global-os-system", "pickle", UNSAFE)
def _(d):
    p = _in(d) / "pytorch_model.bin"
    with open(p, "wb") as fh:
        pickle.dump({"w": _Code(d / "in" / "CODE_RAN")}, fh, protocol=2)
    return ["inspect", str(p)]


@case("pickle-stack-global-in-zip", "pickle", UNSAFE)
def _(d):
    return ["inspect", str(_torch_zip_with(d, pickle.dumps({"w": _Code(d / "in" / "CODE_RAN")}, protocol=4)))]


@case("pickle-global-deflated-zip", "pickle", UNSAFE)
def _(d):
    return ["inspect", str(_torch_zip_with(d, pickle.dumps({"w": _Code(d / "in" / "CODE_RAN")}, protocol=2),
                                           zipfile.ZIP_DEFLATED))]


# --- 5. degenerate weights ------------------------------------------------------------------------------
def _degenerate(name, edit):
    @case(name, "degenerate", MALFORMED)
    def build(d):
        return ["fingerprint", str(zoo_model(d, edit=edit)), "-o", str(d / "out" / "fp.safetensors")]


def _q(state):
    return next(k for k in state if k.endswith("q_proj.weight"))


_degenerate("weights-constant", lambda s: [s.__setitem__(k, torch.full_like(v, 0.25)) for k, v in list(s.items()) if v.dim() == 2])
_degenerate("embedding-scaled-1e25", lambda s: s["model.embed_tokens.weight"].mul_(1e25))
_degenerate("matrix-as-scalar", lambda s: s.__setitem__(_q(s), torch.tensor(1.0)))
_degenerate("matrix-as-vector", lambda s: s.__setitem__(_q(s), s[_q(s)].flatten()))
_degenerate("matrix-as-3d", lambda s: s.__setitem__(_q(s), s[_q(s)].reshape(4, -1, s[_q(s)].shape[1])))


@case("weights-fp8-control", "degenerate", OK)
def _(d):
    model = zoo_model(d, edit=lambda s: [s.__setitem__(k, v.to(torch.float8_e4m3fn)) for k, v in list(s.items())])
    return ["fingerprint", str(model), "-o", str(d / "out" / "fp.safetensors")]


# --- 6. outputs and terminal text -----------------------------------------------------------------------
@case("output-is-a-directory", "output", USAGE)
def _(d):
    (d / "out" / "fp.safetensors").mkdir(parents=True)
    return ["fingerprint", str(tiny(d)), "-o", str(d / "out" / "fp.safetensors")]


@case("output-under-a-file", "output", USAGE)
def _(d):
    (d / "out").mkdir()
    (d / "out" / "file").write_text("x")
    return ["fingerprint", str(tiny(d)), "-o", str(d / "out" / "file" / "fp.safetensors")]


@case("output-unwritable", "output", USAGE)
def _(d):
    return ["fingerprint", str(tiny(d)), "-o", "/proc/self/fp.safetensors"]


@case("report-is-a-file", "output", USAGE)
def _(d):
    (d / "out").mkdir()
    (d / "out" / "report").write_text("x")
    return ["compare", str(tiny(d)), str(tiny(d)), "--report", str(d / "out" / "report")]


@case("path-with-newline-and-ansi", "terminal", NOT_FOUND)
def _(d):
    return ["inspect", str(_in(d) / "no\nsuch\x1b[2Jmodel.safetensors")]


@case("non-utf8-path-control", "terminal", OK)
def _(d):
    target = os.path.join(os.fsencode(_in(d)), b"m\xff\xfe")
    shutil.copytree(os.fsencode(zoo_model(d)), target)
    shutil.rmtree(_in(d) / "base-s0")
    return ["inspect", os.fsdecode(target)]


# --- regressions found by scripts/fuzz_readers.py ---------------------------------------------------------
@case("fuzz-legacy-pickle-truncated-float", "fuzz", MALFORMED)
def _(d):
    p = _in(d) / "pytorch_model.bin"
    p.write_bytes(b"\x80\x02G\x40\x09")  # BINFLOAT with 2 of its 8 bytes
    return ["inspect", str(p)]


@case("fuzz-onnx-matmul-without-output", "fuzz", MALFORMED)
def _(d):
    import numpy as np
    from onnx import helper, numpy_helper
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], [])], "g", [], [],
                              [numpy_helper.from_array(np.ones((2, 2), np.float32), "w")])
    p = _in(d) / "model.onnx"
    p.write_bytes(helper.make_model(graph).SerializeToString())
    return ["inspect", str(p)]


_drift_case("fuzz-drift-verdict-without-configs",
            lambda doc: ([v.pop("verdicts_by_config") for v in doc["verdicts"]], doc)[1])


@case("fuzz-torch-persistent-id-not-a-tuple", "fuzz", MALFORMED)
def _(d):
    # torch.load raises AssertionError on it: whatever the reference loader raises is a refusal
    return ["inspect", str(_torch_zip_with(d, b"\x80\x02K\x01Q."))]
