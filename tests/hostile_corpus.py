"""A corpus of malformed and hostile inputs, generated from small valid ones.

Each case: (name, builder, expected exit code, fragment the one-line message must hold,
command). A builder writes its input under the given directory and returns the path to
hand to the command.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save, save_file

from provenance import errors


def valid_state(hidden=8, layers=2, vocab=40):
    g = torch.Generator().manual_seed(0)
    state = {"model.embed_tokens.weight": torch.randn(vocab, hidden, generator=g)}
    for i in range(layers):
        for proj, rows in (("q", hidden), ("k", hidden), ("v", hidden), ("o", hidden)):
            state[f"model.layers.{i}.self_attn.{proj}_proj.weight"] = torch.randn(rows, hidden, generator=g)
        for proj, shape in (("gate", (16, hidden)), ("up", (16, hidden)), ("down", (hidden, 16))):
            state[f"model.layers.{i}.mlp.{proj}_proj.weight"] = torch.randn(*shape, generator=g)
        state[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(hidden)
        state[f"model.layers.{i}.post_attention_layernorm.weight"] = torch.ones(hidden)
    return state


def st_bytes(state=None) -> bytes:
    return save(state or valid_state())


def _split(blob: bytes):
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _join(header, data: bytes, raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _write(d: Path, name: str, blob: bytes) -> Path:
    p = d / name
    p.write_bytes(blob)
    return p


def _mutate_header(fn):
    def build(d: Path) -> Path:
        header, data = _split(st_bytes())
        fn(header)
        return _write(d, "model.safetensors", _join(header, data))
    return build


def _first(header):
    return next(k for k in header if k != "__metadata__")


def _sharded(d: Path, weight_map_fn=None, index_text=None) -> Path:
    state = valid_state()
    names = sorted(state)
    save_file({n: state[n] for n in names[::2]}, d / "a.safetensors")
    save_file({n: state[n] for n in names[1::2]}, d / "b.safetensors")
    wm = {n: ("a.safetensors" if k % 2 == 0 else "b.safetensors") for k, n in enumerate(names)}
    if weight_map_fn:
        weight_map_fn(wm)
    (d / "model.safetensors.index.json").write_text(index_text if index_text is not None else json.dumps({"weight_map": wm}))
    return d


class _Code:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


def _pickle_code(d: Path) -> Path:
    p = d / "pytorch_model.bin"
    with open(p, "wb") as fh:
        pickle.dump({"w": _Code(d / "CODE_RAN")}, fh)
    return p


def _torch_zip_code(d: Path) -> Path:
    # a torch zip checkpoint whose data.pkl carries code
    p = d / "model.pt"
    torch.save({"w": torch.ones(2)}, p)
    with zipfile.ZipFile(p) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    key = next(n for n in entries if n.endswith("data.pkl"))
    entries[key] = pickle.dumps({"w": _Code(d / "CODE_RAN")}, protocol=2)
    with zipfile.ZipFile(p, "w") as zf:
        for n, b in entries.items():
            zf.writestr(n, b)
    return p


def _gguf_bytes() -> bytes:
    import gguf
    import tempfile
    with tempfile.TemporaryDirectory() as t:
        path = Path(t) / "g.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_block_count(1)
        w.add_tensor("token_embd.weight", np.ones((4, 8), np.float32))
        w.add_tensor("blk.0.attn_q.weight", np.ones((8, 8), np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


def _gguf_patch(offset_fn, value_fmt, value):
    def build(d: Path) -> Path:
        blob = bytearray(_gguf_bytes())
        off = offset_fn(bytes(blob))
        struct.pack_into(value_fmt, blob, off, value)
        return _write(d, "model.gguf", bytes(blob))
    return build


def _onnx_external(location: str):
    def build(d: Path) -> Path:
        import onnx
        from onnx import TensorProto, helper
        t = TensorProto(name="embeddings.word_embeddings.weight", data_type=TensorProto.FLOAT)
        t.dims.extend([4, 4])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "64")):
            e = t.external_data.add()
            e.key, e.value = k, v
        g = helper.make_graph([], "g", [], [], [t])
        p = d / "model.onnx"
        onnx.save(helper.make_model(g), str(p))
        return p
    return build


def _state_file(state_fn, name="model.safetensors"):
    def build(d: Path) -> Path:
        save_file(state_fn(valid_state()), d / name)
        return d / name
    return build


def _with(key, value):
    def fn(s):
        s[key] = value
        return s
    return fn


def _config(text):
    def build(d: Path) -> Path:
        save_file(valid_state(), d / "model.safetensors")
        (d / "config.json").write_text(text)
        return d
    return build


def _symlink_out(d: Path) -> Path:
    outside = d.parent / f"{d.name}-outside.safetensors"
    outside.write_bytes(st_bytes())
    model = d / "model"
    model.mkdir()
    (model / "model.safetensors").symlink_to(outside)
    return model


def _sparse_config(d: Path) -> Path:
    save_file(valid_state(), d / "model.safetensors")
    with open(d / "config.json", "wb") as fh:
        fh.truncate(65 << 20)  # sparse: costs nothing on disk
    return d


M, U, N, S, B = errors.MALFORMED, errors.UNSAFE, errors.NOT_FOUND, errors.UNSUPPORTED, errors.BACKEND_UNAVAILABLE
CASES = [
    # safetensors headers
    ("st-shorter-than-length", lambda d: _write(d, "model.safetensors", b"\x01\x02"), M, "shorter than", "inspect"),
    ("st-length-past-end", lambda d: _write(d, "model.safetensors", struct.pack("<Q", 5000) + b"{}"), M, "past the end", "inspect"),
    ("st-huge-header", lambda d: _write(d, "model.safetensors", struct.pack("<Q", 2**40) + b"{}"), M, "exceeds", "inspect"),
    ("st-invalid-json", lambda d: _write(d, "model.safetensors", _join(None, b"", b"{not json")), M, "not valid JSON", "inspect"),
    ("st-not-utf8", lambda d: _write(d, "model.safetensors", _join(None, b"", b"\xff\xfe\xfd")), M, "not valid JSON", "inspect"),
    ("st-header-is-list", lambda d: _write(d, "model.safetensors", _join([1, 2], b"")), M, "not a JSON object", "inspect"),
    ("st-entry-not-object", _mutate_header(lambda h: h.__setitem__(_first(h), 3)), M, "not an object", "inspect"),
    ("st-unknown-dtype", _mutate_header(lambda h: h[_first(h)].__setitem__("dtype", "F128")), M, "unknown dtype", "inspect"),
    ("st-negative-dim", _mutate_header(lambda h: h[_first(h)].__setitem__("shape", [-1, 8])), M, "invalid shape", "inspect"),
    ("st-float-dim", _mutate_header(lambda h: h[_first(h)].__setitem__("shape", [2.5, 8])), M, "invalid shape", "inspect"),
    ("st-offsets-arity", _mutate_header(lambda h: h[_first(h)].__setitem__("data_offsets", [0])), M, "data_offsets", "inspect"),
    ("st-offsets-out-of-range", _mutate_header(lambda h: h[_first(h)].__setitem__("data_offsets", [0, 10**12])), M, "outside", "inspect"),
    ("st-offsets-reversed", _mutate_header(lambda h: h[_first(h)].__setitem__("data_offsets", [64, 0])), M, "outside", "inspect"),
    ("st-overlapping", _mutate_header(lambda h: [h[k].__setitem__("data_offsets", list(h[_first(h)]["data_offsets"])) for k in list(h)[1:2]] and
                                      h[list(h)[1]].__setitem__("shape", h[_first(h)]["shape"]) or h[list(h)[1]].__setitem__("dtype", h[_first(h)]["dtype"])),
     M, "overlap", "inspect"),
    ("st-shape-bytes-mismatch", _mutate_header(lambda h: h[_first(h)].__setitem__("shape", [1, 1])), M, "needs", "inspect"),
    ("st-duplicate-names", lambda d: _write(d, "model.safetensors", (lambda hd: _join(None, hd[1], (lambda t: t[:-1] + b"," + t[1:-1] + b"}")(json.dumps({_first(hd[0]): hd[0][_first(hd[0])]}).encode())))(_split(st_bytes()))),
     M, "duplicate", "inspect"),
    ("st-metadata-not-object", _mutate_header(lambda h: h.__setitem__("__metadata__", [1])), M, "__metadata__", "inspect"),
    ("st-truncated-shard", lambda d: _write(d, "model.safetensors", st_bytes()[:-100]), M, "outside", "inspect"),
    # sharded checkpoints and their index
    ("index-path-escape", lambda d: _sharded(d, lambda wm: wm.__setitem__(next(iter(wm)), "../../etc/passwd")), U, "outside the model directory", "inspect"),
    ("index-absolute-path", lambda d: _sharded(d, lambda wm: wm.__setitem__(next(iter(wm)), "/etc/passwd")), U, "not a relative path", "inspect"),
    ("index-missing-shard", lambda d: _sharded(d, lambda wm: wm.__setitem__(next(iter(wm)), "c.safetensors")), N, "missing", "inspect"),
    ("index-invalid-json", lambda d: _sharded(d, index_text="{"), M, "invalid JSON", "inspect"),
    ("index-no-weight-map", lambda d: _sharded(d, index_text='{"metadata": {}}'), M, "weight_map", "inspect"),
    ("index-wrong-shard", lambda d: _sharded(d, lambda wm: wm.__setitem__(sorted(wm)[0], "b.safetensors")), M, "index", "inspect"),
    ("symlink-out-of-dir", _symlink_out, U, "outside the model directory", "inspect"),
    # config files
    ("config-lies-hidden", _config(json.dumps({"hidden_size": 4096})), M, "hidden_size=4096", "inspect"),
    ("config-lies-layers", _config(json.dumps({"num_hidden_layers": 80})), M, "num_layers=80", "inspect"),
    ("config-lies-heads", _config(json.dumps({"num_attention_heads": 3})), M, "attention heads", "inspect"),
    ("config-invalid-json", _config("{'single': quotes}"), M, "invalid JSON", "inspect"),
    ("config-huge", _sparse_config, M, "exceeds the limit", "inspect"),
    # pickles
    ("pickle-os-system", _pickle_code, U, "refused", "inspect"),
    ("torch-zip-carrying-code", _torch_zip_code, U, "refused", "inspect"),
    ("pickle-builtins-eval", lambda d: _write(d, "model.pt", pickle.dumps({"w": _Eval()}, protocol=2)), U, "eval; nothing was executed", "inspect"),
    ("torch-random-bytes", lambda d: _write(d, "pytorch_model.bin", bytes(range(200, 256)) * 2), M, "not a loadable PyTorch file", "inspect"),
    ("torch-truncated-zip", lambda d: (torch.save(valid_state(), d / "x.bin"), _write(d, "model.bin", (d / "x.bin").read_bytes()[:300]), (d / "x.bin").unlink())[1],
     M, "not a loadable PyTorch file", "inspect"),
    ("torch-not-a-state-dict", lambda d: (torch.save([torch.ones(2)], d / "model.pt"), d / "model.pt")[1], M, "not a state dict", "inspect"),
    ("torch-no-tensors", lambda d: (torch.save({"epoch": 3}, d / "model.pt"), d / "model.pt")[1], M, "no tensors", "inspect"),
    # GGUF
    ("gguf-bad-magic", lambda d: _write(d, "model.gguf", b"GGUX" + _gguf_bytes()[4:]), M, "not a readable GGUF", "inspect"),
    ("gguf-huge-tensor-count", _gguf_patch(lambda b: 8, "<Q", 2**62), M, "not a readable GGUF", "inspect"),
    ("gguf-huge-kv-count", _gguf_patch(lambda b: 16, "<Q", 2**62), M, "not a readable GGUF", "inspect"),
    ("gguf-truncated", lambda d: _write(d, "model.gguf", _gguf_bytes()[:300]), M, "not a readable GGUF", "inspect"),
    ("gguf-offset-past-end", _gguf_patch(lambda b: b.find(b"blk.0.attn_q.weight") + 19 + 4 + 16 + 4, "<Q", 2**40), M, "GGUF", "inspect"),
    # ONNX
    ("onnx-external-escape", _onnx_external("../../secret.bin"), U, "outside the model directory", "inspect"),
    ("onnx-external-absolute", _onnx_external("/etc/passwd"), U, "not a relative path", "inspect"),
    ("onnx-garbage", lambda d: _write(d, "model.onnx", b"\x08\x07garbage" * 10), M, "ONNX", "inspect"),
    # tensor contents (seen when fingerprinting)
    ("nan-weights", _state_file(_with("model.layers.0.self_attn.q_proj.weight", torch.full((8, 8), float("nan")))), M, "NaN or Inf", "fingerprint"),
    ("inf-weights", _state_file(_with("model.layers.1.mlp.up_proj.weight", torch.full((16, 8), float("inf")))), M, "NaN or Inf", "fingerprint"),
    ("zero-size-embedding", _state_file(_with("model.embed_tokens.weight", torch.zeros(0, 8))), M, "empty", "fingerprint"),
    # things that are not models
    ("no-known-family", _state_file(lambda s: {"foo.bar": torch.ones(3)}), S, "no known model family", "inspect"),
    ("empty-directory", lambda d: d, S, "no checkpoint found", "inspect"),
    ("dangling-symlink", lambda d: ((d / "m.safetensors").symlink_to(d / "nowhere"), d / "m.safetensors")[1], N, "dangling", "inspect"),
    ("unknown-suffix", lambda d: _write(d, "weights.xyz", b"abc"), S, "unknown checkpoint format", "inspect"),
]
