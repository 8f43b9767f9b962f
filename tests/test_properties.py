"""Property-based tests: mutated valid files either read correctly or fail with a ProvenanceError.
Never another exception, never a hang."""
import io
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provenance.errors import ProvenanceError
from provenance.model import open_model

from .hostile_corpus import _gguf_bytes, st_bytes, valid_state

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _torch_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(valid_state(), buf)
    return buf.getvalue()


def _onnx_bytes() -> bytes:
    import tempfile
    from pathlib import Path

    from .onnx_export import bert_onnx
    with tempfile.TemporaryDirectory() as t:
        bert_onnx(Path(t) / "m.onnx", layers=1, hidden=4, ffn=8, vocab=6)
        return (Path(t) / "m.onnx").read_bytes()


SEEDS = {"model.safetensors": st_bytes(), "model.gguf": _gguf_bytes(), "model.bin": _torch_bytes(), "model.onnx": _onnx_bytes()}


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("overwrite8"), st.integers(0, 10**6), st.integers(0, 2**63)),
)


def mutate(blob: bytes, muts) -> bytes:
    data = bytearray(blob)
    for kind, pos, val in muts:
        if not data:
            break
        pos %= len(data)
        if kind == "flip":
            data[pos] ^= val
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = bytes([val])
        else:
            data[pos:pos + 8] = val.to_bytes(8, "little")
    return bytes(data)


def read_everything(path):
    view = open_model(path)
    try:
        for name in view.source.infos():
            view.source.get(name)
    finally:
        view.source.close()


@pytest.mark.parametrize("name", sorted(SEEDS))
@SETTINGS
@given(muts=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_file_reads_or_fails_cleanly(name, muts, tmp_path_factory):
    d = tmp_path_factory.mktemp("mut")
    path = d / name
    path.write_bytes(mutate(SEEDS[name], muts))
    try:
        read_everything(path)
    except ProvenanceError:
        pass
    except zipfile.BadZipFile as exc:  # must have been wrapped
        pytest.fail(f"unwrapped {exc!r}")


@SETTINGS
@given(header=st.dictionaries(st.text(max_size=5), st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=4),
                                                                   lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=8), max_size=4))
def test_arbitrary_json_headers_fail_cleanly(header, tmp_path_factory):
    import json
    import struct
    text = json.dumps(header).encode()
    path = tmp_path_factory.mktemp("hdr") / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 64)
    try:
        read_everything(path)
    except ProvenanceError:
        pass


def _doc_paths(node, prefix=()):
    """Every (path) into a JSON document, for mutating one place at a time."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _doc_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            yield from _doc_paths(v, prefix + (i,))


@pytest.fixture(scope="module")
def small_fingerprint():
    from benchmarks.synthetic import synthetic_fingerprint
    return synthetic_fingerprint(2, seed=3)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                           max_leaves=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choice=st.integers(0, 10_000), value=JSON_VALUES, delete=st.booleans())
def test_tampered_fingerprint_documents_load_or_fail_cleanly(small_fingerprint, tmp_path_factory, choice, value, delete):
    import copy

    from provenance.fingerprint import Fingerprint, load_fingerprint
    doc = copy.deepcopy(small_fingerprint.doc)
    paths = [p for p in _doc_paths(doc) if p]
    path = paths[choice % len(paths)]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    out = tmp_path_factory.mktemp("fp") / "fp.safetensors"
    Fingerprint(doc, dict(small_fingerprint.tensors)).save(out)
    try:
        load_fingerprint(out)
    except ProvenanceError:
        pass
