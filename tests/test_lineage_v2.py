"""Lineage v2: body-only signals that never pass through the embeddings, the embedding signal, and their
calibration against independent models."""
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from provenance.backends import get_backend
from provenance.fingerprint import fingerprint_model
from provenance.lineage import compare_fingerprints
from provenance.zoo import transforms as T
from provenance.zoo.tiny import BASE_CONFIG

BODY = ("body_neurons", "body_attention")
CALIBRATED = ("attention_cka", "neuron_match", "dense_moe_match") + BODY + ("embedding",)


def signal(result, name):
    return next(s for s in result["signals"] if s["name"] == name)


@pytest.fixture(scope="module")
def cpu():
    return get_backend("cpu")


@pytest.fixture(scope="module")
def fps(zoo, cpu):
    names = ("base-s0", "base-s1", "base-s0-wash", "base-s0-pangu", "base-s0-pangu_rotate", "base-s1-scratch_vocab",
             "base-s0-scratch_moe")
    return {n: fingerprint_model(zoo(n), cpu, label=n) for n in names}


@pytest.fixture(scope="module")
def disguised(zoo, cpu, tmp_path_factory):
    """base-s0 with norms folded, the residual stream rotated, hidden/neuron/head permutations and Q/K, V/O,
    up/down rescaling: the same function in other weights."""
    src = zoo("base-s0")
    state = load_file(src / "model.safetensors")
    g = torch.Generator().manual_seed(11)
    moved = T.rescale(T.permute(T.rotate(state, BASE_CONFIG, g), BASE_CONFIG, g), BASE_CONFIG, g)
    out = tmp_path_factory.mktemp("disguised") / "model"
    shutil.copytree(src, out)
    save_file({k: v.contiguous() for k, v in moved.items()}, out / "model.safetensors", metadata={"format": "pt"})
    return fingerprint_model(out, cpu, label="disguised")


@pytest.mark.parametrize("name", BODY)
def test_body_signals_are_invariant_to_rotation_permutation_and_rescaling(fps, disguised, name):
    itself = signal(compare_fingerprints(fps["base-s0"], fps["base-s0"]), name)
    moved = signal(compare_fingerprints(fps["base-s0"], disguised), name)
    assert moved["observed"] == pytest.approx(itself["observed"], abs=1e-3)
    assert moved["used"] and moved["p_value"] < 1e-6 and moved["effect"] >= moved["min_effect"]


@pytest.mark.parametrize("derived", ["base-s0-wash", "base-s0-pangu", "base-s0-pangu_rotate"])
def test_new_vocabulary_with_retrained_embeddings_is_detected_from_the_body(fps, derived):
    r = compare_fingerprints(fps["base-s0"], fps[derived])
    assert r["verdict"] == "derived", r["reason"]
    # the anchor-token signals see nothing: the evidence is the body's alone
    assert signal(r, "attention_cka")["effect"] < 0.05
    assert any(signal(r, n)["p_value"] < 1e-6 and signal(r, n)["effect"] >= signal(r, n)["min_effect"] for n in BODY)


def _permute_and_rescale_heads(state: dict, cfg: dict, g: torch.Generator) -> dict:
    """Function-preserving: key/value groups and the query heads within each group permuted, Q/K and V/O
    rescaled per group (grouped-query attention shares one K and V per group)."""
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, group = cfg["hidden_size"] // heads, heads // kv
    out = dict(state)

    def rows(order):
        return torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in order])

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}.self_attn."
        pk = torch.randperm(kv, generator=g).tolist()
        q_order = [pk[n] * group + int(j) for n in range(kv) for j in torch.randperm(group, generator=g)]
        c, d = torch.rand(kv, generator=g) * 2 + 0.5, torch.rand(kv, generator=g) * 2 + 0.5
        cq, ck = torch.repeat_interleave(c, group * hd), torch.repeat_interleave(c, hd)
        dv, do = torch.repeat_interleave(d, hd), torch.repeat_interleave(d, group * hd)
        for name, order, scale in (("q_proj", q_order, cq), ("k_proj", pk, 1 / ck), ("v_proj", pk, dv)):
            out[p + f"{name}.weight"] = state[p + f"{name}.weight"][rows(order)] * scale[:, None]
            out[p + f"{name}.bias"] = state[p + f"{name}.bias"][rows(order)] * scale
        out[p + "o_proj.weight"] = state[p + "o_proj.weight"][:, rows(q_order)] / do[None, :]
    return out


def test_rotated_pangu_type_derivative_with_permuted_heads_is_found(zoo, cpu, fps, tmp_path):
    import json
    src = zoo("base-s0-pangu")
    cfg = json.loads((src / "config.json").read_text())
    moved = _permute_and_rescale_heads(T.rotate(load_file(src / "model.safetensors"), cfg, torch.Generator().manual_seed(5)),
                                       cfg, torch.Generator().manual_seed(6))
    out = tmp_path / "model"
    shutil.copytree(src, out)
    save_file({k: v.contiguous() for k, v in moved.items()}, out / "model.safetensors", metadata={"format": "pt"})
    r = compare_fingerprints(fps["base-s0"], fingerprint_model(out, cpu, label="disguised pangu"))
    assert r["verdict"] == "derived", r["reason"]
    assert r["direction"]["parent"] == "a"


def test_pangu_type_derivative_with_every_head_turned_inside_is_found(zoo, cpu, fps):
    """Head-internal rotations hide the map between the residual streams from every start but the attention
    products; on a 4-layer model each layer's map is fitted on the other three, from the products' spectral
    alignment as well as the identity."""
    r = compare_fingerprints(fps["base-s0"], fingerprint_model(zoo("base-s0-pangu_rotate_heads"), cpu))
    assert r["verdict"] == "derived", r["reason"]
    body = {s["name"]: s for s in r["signals"] if s["name"] in ("body_neurons", "body_attention")}
    assert all(s["p_value"] <= 1e-4 and s["effect"] >= s["min_effect"] for s in body.values()), body


@pytest.mark.parametrize("a,b", [("base-s0", "base-s1"), ("base-s0", "base-s1-scratch_vocab"),
                                 ("base-s0", "base-s0-scratch_moe"), ("base-s1", "base-s0-pangu")])
def test_independent_models_are_not_called_derived_by_any_signal(fps, a, b):
    r = compare_fingerprints(fps[a], fps[b])
    assert r["verdict"] == "independent", r["reason"]
    for s in r["signals"]:
        if s["name"] in CALIBRATED and s["used"]:
            assert s["p_value"] > 0.01 and s["effect"] < s["min_effect"] / 2, s["name"]


def test_upcycled_moe_points_to_the_dense_parent(fps):
    r = compare_fingerprints(fps["base-s0-pangu"], fps["base-s0"])
    assert r["direction"]["parent"] == "b" and "dense" in r["direction"]["evidence"]
    r = compare_fingerprints(fps["base-s0"], fps["base-s1"])
    assert r["direction"]["parent"] is None and "not determinable" in r["direction"]["evidence"]


@pytest.mark.parametrize("child,why", [("base-s0-prune", "pruned child"), ("base-s0-vocab", "vocabulary extends")])
def test_structural_direction_names_the_parent_either_way_round(zoo, cpu, fps, child, why):
    c = fingerprint_model(zoo(child), cpu, label=child)
    forward, backward = compare_fingerprints(fps["base-s0"], c), compare_fingerprints(c, fps["base-s0"])
    assert (forward["direction"]["parent"], backward["direction"]["parent"]) == ("a", "b")
    assert why in forward["direction"]["evidence"]


def test_embedding_signal_uses_a_reference_panel_not_a_within_pair_null(fps):
    s = signal(compare_fingerprints(fps["base-s0"], fps["base-s1"]), "embedding")
    assert s["used"] and "reference panel" in s["null"] and len(s["null_values"]) >= 10
    assert s["statistic"] > 0.05  # independent same-data embeddings do align partly: the reason for the panel


def test_a_version_1_fingerprint_is_refused_with_a_clear_message(fps, tmp_path):
    import json

    from provenance.errors import Unsupported
    from provenance.fingerprint import Fingerprint, load_fingerprint
    old = Fingerprint({**json.loads(json.dumps(fps["base-s0"].doc)), "schema_version": "1.0"}, dict(fps["base-s0"].tensors))
    old.save(tmp_path / "v1.safetensors")
    with pytest.raises(Unsupported, match=r"'1\.0'; this version reads 2\.\d+: fingerprint the model again"):
        load_fingerprint(tmp_path / "v1.safetensors")


@pytest.mark.slow
def test_real_cousin_pair_is_derived_and_unrelated_pair_independent(cpu):
    from .realweights import real_weights_path
    minilm = real_weights_path("minilm").parent
    a = fingerprint_model(minilm, cpu, label="all-MiniLM-L6-v2")
    cousin = fingerprint_model(real_weights_path("paraphrase_l3_onnx"), cpu, label="paraphrase-MiniLM-L3-v2",
                               vocab_file=minilm / "tokenizer.json")
    r = compare_fingerprints(a, cousin)
    assert r["verdict"] == "derived", r["reason"]
    unrelated = compare_fingerprints(a, fingerprint_model(real_weights_path("smollm2_gguf"), cpu, label="SmolLM2-135M"))
    assert unrelated["verdict"] == "independent", unrelated["reason"]
