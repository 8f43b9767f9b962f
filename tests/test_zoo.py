import torch

from provenance.zoo import build_many, parse_name
from provenance.zoo.build import TRAIN_THREADS, torch_threads
from provenance.zoo.corpus import Vocab, corpus_text
from provenance.zoo.tiny import BASE_CONFIG, init_state, train


def test_training_is_bit_identical_run_to_run():
    data = Vocab.bytes_only().encode(corpus_text("base")[:50_000])
    runs = []
    for _ in range(2):
        with torch_threads(TRAIN_THREADS):
            state = init_state(BASE_CONFIG, torch.Generator().manual_seed(3))
            runs.append(train(state, BASE_CONFIG, data, steps=30, lr=3e-3, seed=9))
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name


def test_zoo_names_parse_and_unknown_transforms_are_refused():
    assert parse_name("base-s2-upcycle") == (2, "upcycle") and parse_name("base-s0") == (0, None)
    for bad in ("base", "s0", "base-s0-teleport", "base-x1"):
        try:
            parse_name(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_zoo_models_are_hf_layout_checkpoints(zoo):
    path = zoo("base-s0-vocab")
    assert {p.name for p in path.iterdir()} >= {"model.safetensors", "config.json", "vocab.json", "merges.json"}
    assert build_many(["base-s0"])["base-s0"].exists()


NEW_TRANSFORMS = ("rotate", "vocab_carry", "wash", "finegrained_moe", "long_continued", "pangu", "pangu_rotate",
                  "scratch_moe", "scratch_vocab")


def _probe(vocab):
    return vocab.encode(corpus_text("other")[:4000])[:1024].view(8, 128)


def test_rotation_after_norm_folding_preserves_the_function(base_dir):
    from provenance.zoo import transforms as T
    from provenance.zoo.build import _load
    from provenance.zoo.tiny import forward
    state, cfg, vocab = _load(base_dir)
    ids = _probe(vocab)
    before = forward(state, cfg, ids)
    rotated = T.rotate(state, cfg, torch.Generator().manual_seed(5))
    assert torch.allclose(forward(rotated, cfg, ids), before, atol=1e-4, rtol=0)
    assert all(torch.equal(rotated[k], torch.ones_like(rotated[k])) for k in rotated if k.endswith("norm.weight"))
    # a real rotation: the embedding is not a permutation or rescaling of the original
    assert torch.linalg.matrix_rank(rotated["model.embed_tokens.weight"] - state["model.embed_tokens.weight"]) > 32
    turned_heads = T.rotate_heads(state, cfg, torch.Generator().manual_seed(8))
    assert torch.allclose(forward(turned_heads, cfg, ids), before, atol=1e-4, rtol=0)
    for name in ("q_proj", "v_proj"):  # a real change of every head's rows, not a no-op
        w = f"model.layers.0.self_attn.{name}.weight"
        assert (turned_heads[w] - state[w]).norm() > 0.5 * state[w].norm()
    moe, moe_cfg = T.finegrained_moe(state, cfg, torch.Generator().manual_seed(6))
    turned = T.rotate(moe, moe_cfg, torch.Generator().manual_seed(7))
    assert torch.allclose(forward(turned, moe_cfg, ids), forward(moe, moe_cfg, ids), atol=1e-4, rtol=0)


def test_finegrained_split_is_the_dense_ffn_under_full_uniform_routing(base_dir):
    from provenance.zoo import transforms as T
    from provenance.zoo.build import _load
    from provenance.zoo.tiny import forward, loss_on
    state, cfg, vocab = _load(base_dir)
    moe, moe_cfg = T.finegrained_moe(state, cfg, torch.Generator().manual_seed(8))
    ids = _probe(vocab)
    uniform = {k: torch.zeros_like(v) if k.endswith("mlp.gate.weight") else v for k, v in moe.items()}
    every_expert = {**moe_cfg, "num_experts_per_tok": moe_cfg["num_experts"]}
    assert torch.allclose(forward(uniform, every_expert, ids), forward(state, cfg, ids), atol=1e-4, rtol=0)
    # each routed neuron is dealt twice; top-2 routing keeps the shared expert exact and loses part of the rest
    up0 = state["model.layers.0.mlp.up_proj.weight"]
    counts = torch.zeros(up0.shape[0])
    for e in range(8):
        rows = moe[f"model.layers.0.mlp.experts.{e}.up_proj.weight"]
        counts += (rows[:, None, :] == up0[None]).all(-1).sum(0)
    shared = moe["model.layers.0.mlp.shared_expert.up_proj.weight"]
    in_shared = (shared[:, None, :] == up0[None]).all(-1).any(0)
    assert in_shared.sum() == 32 and (counts[~in_shared] == 2).all() and (counts[in_shared] == 0).all()
    data = vocab.encode(corpus_text("other"))
    dense, routed = loss_on(state, cfg, data), loss_on(moe, moe_cfg, data)
    assert dense < routed < dense + 0.25 * (5.545 - dense)  # far nearer the dense loss than the uniform ln(256)


def test_new_zoo_models_build_deterministically_by_seed(tmp_path, monkeypatch, base_dir):
    """Same seed, same bytes: every new recipe, shortened, built twice into separate caches."""
    import dataclasses
    import importlib
    import shutil

    B = importlib.import_module("provenance.zoo.build")  # the module, not the function of the same name
    short = {t: dataclasses.replace(B.TRANSFORMS[t], steps=min(B.TRANSFORMS[t].steps, 6),
                                    pre=tuple(dataclasses.replace(p, steps=4) for p in B.TRANSFORMS[t].pre))
             for t in NEW_TRANSFORMS}
    monkeypatch.setattr(B, "TRANSFORMS", {**B.TRANSFORMS, **short})
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        root.mkdir()
        shutil.copytree(base_dir, root / "base-s0")
        for t in NEW_TRANSFORMS:
            B.build(f"base-s0-{t}", root)
    for t in NEW_TRANSFORMS:
        files = sorted(p.name for p in (roots[0] / f"base-s0-{t}").iterdir())
        assert "model.safetensors" in files
        assert ("merges.json" in files) == (t not in ("rotate", "finegrained_moe", "long_continued")), t
        for name in files:
            assert (roots[0] / f"base-s0-{t}" / name).read_bytes() == (roots[1] / f"base-s0-{t}" / name).read_bytes(), (t, name)
    # a different seed gives a different model, and a control owes nothing to its nominal base
    B.build("base-s0-scratch_vocab", roots[0])
    other = B.build("base-s1-scratch_vocab", tmp_path / "c")
    assert (other / "model.safetensors").read_bytes() != (roots[0] / "base-s0-scratch_vocab" / "model.safetensors").read_bytes()
    assert not (tmp_path / "c" / "base-s1").exists()


def test_new_recipes_say_what_they_are():
    from provenance.zoo import TRANSFORMS
    assert {t for t, spec in TRANSFORMS.items() if spec.independent} == {"scratch_moe", "scratch_vocab"}
    assert TRANSFORMS["long_continued"].steps == 2000 and TRANSFORMS["long_continued"].lr == 3e-3
    assert TRANSFORMS["wash"].pre and TRANSFORMS["pangu"].pre and TRANSFORMS["pangu"].steps == 2000


def test_awm_baseline_undoes_a_hidden_permutation_but_not_a_rotation(base_dir):
    import numpy as np

    from benchmarks.lineage_zoo import _checkpoint, awm_score, unbiased_cka
    from provenance.zoo import transforms as T
    from provenance.zoo.build import _load
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16))
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    assert abs(unbiased_cka(x, 3.0 * x @ q) - 1.0) < 1e-9 and abs(unbiased_cka(x, rng.standard_normal((64, 16)))) < 0.2
    state, cfg, vocab = _load(base_dir)
    base = _checkpoint(base_dir)

    def as_checkpoint(s):
        return {k: v.double().numpy() for k, v in s.items()}, vocab.ids
    permuted = as_checkpoint(T.permute(state, cfg, torch.Generator().manual_seed(1)))
    rotated = as_checkpoint(T.rotate(state, cfg, torch.Generator().manual_seed(1)))
    assert awm_score(base, permuted) > 0.99
    assert awm_score(base, rotated) < 0.5
