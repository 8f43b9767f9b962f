"""Fingerprints are tamper-evident (digest), optionally signed (ed25519), and spot-checkable against weights."""
from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from provenance.cli import main
from provenance.errors import MalformedInput
from provenance.fingerprint import load_fingerprint
from provenance.fingerprint.integrity import DIGEST_KEY, digest
from provenance.fingerprint.record import tensor_key


@pytest.fixture(scope="module")
def signed(tmp_path_factory, zoo):
    d = tmp_path_factory.mktemp("fp")
    assert main(["--quiet", "fingerprint", "keygen", str(d / "key.pem"), str(d / "key.pub")]) == 0
    assert main(["--quiet", "fingerprint", "keygen", str(d / "other.pem"), str(d / "other.pub")]) == 0
    assert main(["--quiet", "fingerprint", str(zoo("base-s0")), "-o", str(d / "a.safetensors"), "--sign", str(d / "key.pem")]) == 0
    assert main(["--quiet", "fingerprint", str(zoo("base-s1")), "-o", str(d / "x.safetensors")]) == 0
    return d


def _rewrite(src, dst, doc_fn=None, tensor_fn=None, meta_fn=None, reseal=False):
    with safe_open(str(src), "pt") as fh:
        meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
    if doc_fn:
        doc = json.loads(meta["provenance_fingerprint"])
        doc_fn(doc)
        meta["provenance_fingerprint"] = json.dumps(doc)
    if tensor_fn:
        tensor_fn(tensors)
    if meta_fn:
        meta_fn(meta)
    if reseal:  # a forger who knows the scheme recomputes the (unkeyed) digest
        meta[DIGEST_KEY] = digest(meta["provenance_fingerprint"], {k: v for k, v in tensors.items() if k != "_empty"})
        meta.pop("provenance_signature", None), meta.pop("provenance_signer", None)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def _zero(tensors):
    tensors[tensor_key("gram.q", 0)].zero_()


EDITS = {
    "document-edited": dict(doc_fn=lambda d: d["model"].__setitem__("label", "someone-else")),
    "hash-claimed": dict(doc_fn=lambda d: d["model"].__setitem__("content_hash", "0" * 64)),
    "layer-count-lies": dict(doc_fn=lambda d: d["layers"].pop()),
    "tensor-zeroed": dict(tensor_fn=_zero),
    "digest-stripped": dict(meta_fn=lambda m: m.pop(DIGEST_KEY)),
    "signature-swapped": dict(meta_fn=lambda m: m.__setitem__("provenance_signature", "00" * 64)),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_fingerprint_is_refused_on_load(signed, edit, capsys):
    path = _rewrite(signed / "a.safetensors", signed / f"{edit}.safetensors", **EDITS[edit])
    with pytest.raises(MalformedInput):
        load_fingerprint(path)
    rc = main(["--quiet", "compare", str(path), str(signed / "x.safetensors")])
    err = capsys.readouterr().err
    assert rc == 4 and err.count("\n") == 1 and ("digest" in err or "signature" in err or "layers" in err), err


def test_untouched_signed_fingerprint_loads_and_is_trusted(signed, capsys):
    assert load_fingerprint(signed / "a.safetensors").num_layers > 0
    assert main(["--quiet", "compare", str(signed / "a.safetensors"), str(signed / "a.safetensors"),
                 "--trust", str(signed / "key.pub")]) == 0


def test_trust_refuses_unsigned_and_other_signers(signed, capsys):
    assert main(["--quiet", "compare", str(signed / "a.safetensors"), str(signed / "x.safetensors"),
                 "--trust", str(signed / "key.pub")]) == 5  # x is unsigned
    assert "not signed" in capsys.readouterr().err
    assert main(["--quiet", "compare", str(signed / "a.safetensors"), str(signed / "a.safetensors"),
                 "--trust", str(signed / "other.pub")]) == 5
    assert "not among the trusted keys" in capsys.readouterr().err


def test_resealed_forgery_is_caught_by_verify(signed, zoo, capsys):
    """Other weights' fingerprint claiming base-s0's hashes, digest recomputed: it loads, verify catches it."""
    truth = load_fingerprint(signed / "a.safetensors").doc["model"]
    forged = _rewrite(signed / "x.safetensors", signed / "forged.safetensors", reseal=True,
                      doc_fn=lambda d: d["model"].update({k: truth[k] for k in ("label", "content_hash", "sha256")}))
    assert load_fingerprint(forged).doc["model"]["content_hash"] == truth["content_hash"]
    rc = main(["--quiet", "fingerprint", "verify", str(forged), str(zoo("base-s0"))])
    out = capsys.readouterr()
    assert rc == 1 and "does NOT match" in out.out and "recomputed layers  MISMATCH" in out.out


def test_verify_accepts_the_true_weights_and_refuses_others(signed, zoo, capsys):
    assert main(["--quiet", "fingerprint", "verify", str(signed / "a.safetensors"), str(zoo("base-s0")),
                 "--trust", str(signed / "key.pub")]) == 0
    assert "fingerprint matches the weights" in capsys.readouterr().out
    assert main(["--quiet", "fingerprint", "verify", str(signed / "a.safetensors"), str(zoo("base-s0-finetune"))]) == 1


def test_keygen_never_overwrites_a_key(signed, capsys):
    before = (signed / "key.pem").read_bytes()
    assert main(["--quiet", "fingerprint", "keygen", str(signed / "key.pem"), str(signed / "k2.pub")]) == 5
    assert (signed / "key.pem").read_bytes() == before
