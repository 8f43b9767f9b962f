"""Models where users keep them: the Hugging Face hub cache, and single files beside other files."""
import hashlib
import os
import shutil

import numpy as np
import pytest
import torch

from provenance import errors
from provenance.cli import main
from provenance.errors import UnsafeInput
from provenance.fingerprint import load_fingerprint
from provenance.io import open_source
from provenance.outputs import refuse_outputs

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hf_cache(model_dir, cache, repo="models--org--tiny", revision=REVISION):
    """The layout huggingface_hub writes: blobs named by hash (sha256 for LFS files, the git blob sha1 for small
    ones), snapshots/<rev>/<file> as relative links into ../../blobs/, and refs/main holding the revision."""
    root = cache / repo
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for f in sorted(model_dir.iterdir()):
        data = f.read_bytes()
        blob = hashlib.sha256(data).hexdigest() if f.suffix == ".safetensors" else _git_blob_sha1(data)
        (root / "blobs" / blob).write_bytes(data)
        (snapshot / f.name).symlink_to(os.path.join("..", "..", "blobs", blob))
    return root


@pytest.fixture
def hub(base_dir, tmp_path):
    return hf_cache(base_dir, tmp_path / "hub")


def test_hf_cache_layout_is_built_as_the_hub_writes_it(hub):
    snapshot = hub / "snapshots" / REVISION
    link = os.readlink(snapshot / "model.safetensors")
    assert link.startswith("../../blobs/") and len(os.path.basename(link)) == 64
    assert (snapshot / "config.json").resolve().parent == (hub / "blobs").resolve()


@pytest.mark.parametrize("which", ["repository", "snapshot"])
def test_fingerprint_through_the_hf_cache_matches_the_plain_directory(which, hub, base_dir, tmp_path):
    given = hub if which == "repository" else hub / "snapshots" / REVISION
    assert main(["--quiet", "fingerprint", str(given), "-o", str(tmp_path / "hf.safetensors")]) == 0
    assert main(["--quiet", "fingerprint", str(base_dir), "-o", str(tmp_path / "plain.safetensors")]) == 0
    hf, plain = load_fingerprint(tmp_path / "hf.safetensors"), load_fingerprint(tmp_path / "plain.safetensors")
    assert hf.doc["model"]["content_hash"] == plain.doc["model"]["content_hash"]  # files hash under their own names
    assert hf.tensors.keys() == plain.tensors.keys()
    assert all(torch.equal(hf.tensors[k], plain.tensors[k]) for k in hf.tensors)
    with open_source(given) as source:
        assert set(source.sha256()) == {"model.safetensors", "config.json", "vocab.json"}


def test_a_link_leaving_the_repository_folder_is_refused(hub, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    config = hub / "snapshots" / REVISION / "config.json"
    config.unlink()
    config.symlink_to(os.path.join("..", "..", "..", "..", "elsewhere", "config.json"))
    assert config.resolve() == (outside / "config.json").resolve()
    rc = main(["--quiet", "fingerprint", str(hub), "-o", str(tmp_path / "fp.safetensors")])
    assert rc == errors.UNSAFE and "outside the repository folder models--org--tiny" in capsys.readouterr().err
    assert not (tmp_path / "fp.safetensors").exists()


def test_a_link_into_a_sibling_repository_is_refused(hub, base_dir, tmp_path, capsys):
    sibling = hf_cache(base_dir, tmp_path / "hub", repo="models--org--other")
    weights = hub / "snapshots" / REVISION / "model.safetensors"
    target = os.readlink(weights)
    weights.unlink()
    weights.symlink_to(os.path.join("..", "..", "..", sibling.name, "blobs", os.path.basename(target)))
    assert weights.exists()
    assert main(["--quiet", "inspect", str(hub / "snapshots" / REVISION)]) == errors.UNSAFE
    assert "outside the repository folder" in capsys.readouterr().err


def test_refs_main_naming_a_path_is_refused(hub, capsys):
    (hub / "refs" / "main").write_text("../../../etc")
    assert main(["--quiet", "inspect", str(hub)]) == errors.MALFORMED
    assert "not a revision" in capsys.readouterr().err


def test_outputs_inside_the_repository_folder_are_refused(hub, tmp_path):
    snapshot = hub / "snapshots" / REVISION
    for model in (hub, snapshot, snapshot / "model.safetensors"):
        with pytest.raises(UnsafeInput, match="inside the model directory"):
            refuse_outputs([hub / "blobs" / "fp.safetensors"], [model])
    refuse_outputs([tmp_path / "fp.safetensors"], [snapshot])


# single-file models -------------------------------------------------------------------------------------------

def _gguf_file(path):
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(3)
    hidden, heads, ffn, vocab = 32, 4, 48, 40
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(hidden)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_feed_forward_length(ffn)
    writer.add_tensor("token_embd.weight", rng.normal(size=(vocab, hidden)).astype(np.float32))
    for i in range(2):
        for name, shape in (("attn_q", (hidden, hidden)), ("attn_k", (hidden, hidden)), ("attn_v", (hidden, hidden)),
                            ("attn_output", (hidden, hidden)), ("attn_norm", (hidden,)), ("ffn_norm", (hidden,)),
                            ("ffn_gate", (ffn, hidden)), ("ffn_up", (ffn, hidden)), ("ffn_down", (hidden, ffn))):
            writer.add_tensor(f"blk.{i}.{name}.weight", rng.normal(size=shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _onnx_file(path):
    pytest.importorskip("onnx")
    from tests.onnx_export import bert_onnx
    bert_onnx(path)
    return path


SINGLE_FILES = {
    "safetensors": lambda d, base: shutil.copy(base / "model.safetensors", d / "m.safetensors") and d / "m.safetensors",
    "gguf": lambda d, base: _gguf_file(d / "m.gguf"),
    "onnx": lambda d, base: _onnx_file(d / "m.onnx"),
}


@pytest.mark.parametrize("fmt", list(SINGLE_FILES))
def test_single_file_model_is_fingerprinted_beside_itself(fmt, base_dir, tmp_path):
    model = SINGLE_FILES[fmt](tmp_path, base_dir)
    before = model.read_bytes()
    out = tmp_path / "m.fp.safetensors"
    assert main(["--quiet", "fingerprint", str(model), "-o", str(out)]) == 0
    assert load_fingerprint(out).num_layers >= 2 and model.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([model.name, out.name])


def test_single_file_model_is_never_overwritten(base_dir, tmp_path, capsys):
    model = SINGLE_FILES["safetensors"](tmp_path, base_dir)
    before = model.read_bytes()
    assert main(["--quiet", "fingerprint", str(model), "-o", str(model)]) == errors.UNSAFE
    assert "over the input file" in capsys.readouterr().err and model.read_bytes() == before


def test_files_read_beside_a_single_file_are_guarded(base_dir, tmp_path, capsys):
    model = SINGLE_FILES["safetensors"](tmp_path, base_dir)
    shutil.copy(base_dir / "config.json", tmp_path / "config.json")  # read with the file, so an input too
    assert main(["--quiet", "drift", str(model), "--dtypes", "fp32", "-o", str(tmp_path / "config.json")]) == errors.UNSAFE
    assert "over the input file" in capsys.readouterr().err
    refuse_outputs([tmp_path / "drift.json", tmp_path / "report"], [model])  # new names beside it are fine


def test_onnx_external_data_file_is_guarded(tmp_path):
    onnx = pytest.importorskip("onnx")
    model_path = _onnx_file(tmp_path / "m.onnx")
    model = onnx.load(str(model_path))
    onnx.save_model(model, str(model_path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.weights", size_threshold=0)
    assert (tmp_path / "m.weights").exists()
    with pytest.raises(UnsafeInput, match="over the input file"):
        refuse_outputs([tmp_path / "m.weights"], [model_path])
    refuse_outputs([tmp_path / "m.fp.safetensors"], [model_path])


def test_directory_model_still_guards_everything_inside(base_dir, tmp_path):
    with pytest.raises(UnsafeInput, match="inside the model directory"):
        refuse_outputs([base_dir / "sub" / "fp.safetensors"], [base_dir])
    refuse_outputs([tmp_path / "fp.safetensors", None], [base_dir])
