"""The embedded zoo: tiny trained checkpoints in HF layout, deterministic by seed, cached.

A model is named `base-s<seed>` or `base-s<seed>-<transform>`; TRANSFORMS says how each
derivative is made. Rows marked `independent` are controls: trained from a fresh initialisation,
named after a base but owing it nothing. Nothing is downloaded: the training text is the stdlib's own source.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from . import transforms as T
from .corpus import Vocab, corpus_digest, corpus_text
from .tiny import BASE_CONFIG, init_state, train

ZOO_VERSION = 5  # 5: config.json carries the recipe identity (provenance_zoo_recipe)
BASE_STEPS, BASE_LR = 400, 3e-3
TRAIN_THREADS = 1  # one thread: no reduction order left to the scheduler, so a build is bit-identical


@dataclass(frozen=True)
class Phase:
    """A training phase run before a transform's main one; `trainable` picks the tensors it updates."""
    steps: int
    lr: float
    trainable: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Transform:
    description: str
    op: Callable | None = None       # (state, cfg, gen, vocab) -> (state, cfg, vocab)
    steps: int = 0
    lr: float = 1e-3
    data: str = "other"
    pre: tuple[Phase, ...] = ()      # phases before the main training, in order
    independent: bool = False        # a control: made from a fresh initialisation, the base is not used
    source: str | None = None        # start from this derivative of the base instead of the base itself


EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight")
OTHER_MERGES = 128  # the other tokenizer: twice the merges of `vocab`, its own shuffled ids


def _embeddings_only(key: str) -> bool:
    return key in EMBEDDINGS


def _other_vocab(g: torch.Generator) -> Vocab:
    return Vocab.with_merges(corpus_text("other"), OTHER_MERGES, seed=int(torch.randint(0, 2**31, (1,), generator=g)))


def _vocab_carry(s, c, g, v):
    new = _other_vocab(g)
    return (*T.change_vocab(s, c, v, new), new)


def _wash(s, c, g, v):
    new = _other_vocab(g)
    return (*T.reinit_vocab(s, c, new, g), new)


def _pangu(s, c, g, v):
    s, c = T.finegrained_moe(s, c, g)
    return _wash(s, c, g, v)


def _scratch(moe: bool):
    """A fresh model (the base architecture, or the pangu MoE shape) with the other tokenizer."""
    def make(s, c, g, v):
        new = _other_vocab(g)
        cfg = {**BASE_CONFIG, "vocab_size": len(new.tokens)}
        state = init_state(cfg, g)
        if moe:  # the MoE shape comes from splitting the fresh FFN; its matrices are then redrawn
            state, cfg = T.finegrained_moe(state, cfg, g)
            for k in sorted(k for k in state if ".mlp." in k):
                std = 0.02 / math.sqrt(2 * cfg["num_hidden_layers"]) if k.endswith("down_proj.weight") else 0.02
                state[k] = torch.randn(state[k].shape, generator=g) * std
        return state, cfg, new
    return make


def _drop_and_rotate(s, c, g, v):
    s, c = T.remove_layer(s, c, 2)
    return T.rotate(s, c, g), c, v


def _vocab_change(s, c, g, v):
    new = Vocab.with_merges(corpus_text("other"), 64, seed=int(torch.randint(0, 2**31, (1,), generator=g)))
    state, cfg = T.change_vocab(s, c, v, new)
    return state, cfg, new


TRANSFORMS: dict[str, Transform] = {
    "finetune": Transform("fine-tuned on other data (150 steps, lr 1e-3)", steps=150),
    "continued": Transform("long continued training at a high learning rate (800 steps, lr 3e-3)", steps=800, lr=3e-3),
    "permute": Transform("hidden dimensions, MLP neurons and attention heads permuted (function-preserving)",
                         lambda s, c, g, v: (T.permute(s, c, g), c, v)),
    "rescale": Transform("Q/K, V/O and up/down rescaled per layer (function-preserving)",
                         lambda s, c, g, v: (T.rescale(s, c, g), c, v)),
    "obfuscate": Transform("hidden dimensions, MLP neurons and heads permuted, then Q/K, V/O and up/down rescaled (function-preserving)",
                           lambda s, c, g, v: (T.rescale(T.permute(s, c, g), c, g), c, v)),
    "upcycle": Transform("dense FFN upcycled to a 4-expert MoE with a shared expert, then trained 150 steps",
                         lambda s, c, g, v: (*T.upcycle(s, c, g), v), steps=150),
    "remove_layer": Transform("layer 2 removed, then trained 100 steps",
                              lambda s, c, g, v: (*T.remove_layer(s, c, 2), v), steps=100),
    "insert_layer": Transform("layer 1 duplicated (depth up-scaling), then trained 100 steps",
                              lambda s, c, g, v: (*T.insert_layer(s, c, 1), v), steps=100),
    "prune": Transform("25% of FFN neurons pruned, then trained 100 steps",
                       lambda s, c, g, v: (*T.prune_mlp(s, c), v), steps=100),
    "int8": Transform("int8 per-row quantization round trip", lambda s, c, g, v: (T.quantize_int8(s), c, v)),
    "noise_finetune": Transform("Gaussian noise (0.5x weight std) added, then trained 150 steps",
                                lambda s, c, g, v: (T.add_noise(s, g), c, v), steps=150),
    "vocab": Transform("new tokenizer (64 merges, shuffled ids), then trained 150 steps", _vocab_change, steps=150),
    "rotate": Transform("norms folded into the matrices, residual stream turned by a random orthogonal matrix "
                        "(function-preserving), then trained 150 steps",
                        lambda s, c, g, v: (T.rotate(s, c, g), c, v), steps=150),
    "vocab_carry": Transform(f"new tokenizer ({OTHER_MERGES} merges, shuffled ids), embedding and LM head rows carried "
                             "over by token string, new tokens from their pieces, then trained 150 steps",
                             _vocab_carry, steps=150),
    "wash": Transform(f"new tokenizer ({OTHER_MERGES} merges, shuffled ids) with embeddings and LM head re-initialized, "
                      "trained 150 steps with the body frozen (lr 3e-3), then 250 steps in full",
                      _wash, steps=250, pre=(Phase(150, 3e-3, _embeddings_only),)),
    "finegrained_moe": Transform("dense FFN split into 8 routed experts of width 24 (each neuron in about 2) plus a "
                                 "shared expert of the 32 strongest neurons, top-2 router, then trained 150 steps",
                                 lambda s, c, g, v: (*T.finegrained_moe(s, c, g), v), steps=150),
    "long_continued": Transform("5x the base's training on other data at a high learning rate (2000 steps, lr 3e-3)",
                                steps=2000, lr=3e-3),
    "pangu": Transform("fine-grained MoE split (as finegrained_moe), new tokenizer with embeddings and LM head "
                       "re-initialized, 150 steps with the body frozen, then 2000 steps in full at lr 3e-3",
                       _pangu, steps=2000, lr=3e-3, pre=(Phase(150, 3e-3, _embeddings_only),)),
    "pangu_rotate": Transform("the pangu model with its norms folded and its residual stream turned by a random "
                              "orthogonal matrix (function-preserving, no further training)",
                              lambda s, c, g, v: (T.rotate(s, c, g), c, v), source="pangu"),
    "rotate_heads": Transform("every head's internal basis turned (V/O by a random orthogonal matrix, Q/K within each RoPE "
                              "frequency plane), norms folded and the residual stream turned (all function-preserving), "
                              "then trained 150 steps",
                              lambda s, c, g, v: (T.rotate(T.rotate_heads(s, c, g), c, g), c, v), steps=150),
    "pangu_rotate_heads": Transform("the pangu model with every head's internal basis turned (as rotate_heads), its norms "
                                    "folded and its residual stream turned (function-preserving, no further training)",
                                    lambda s, c, g, v: (T.rotate(T.rotate_heads(s, c, g), c, g), c, v), source="pangu"),
    "pangu_rotate_depth": Transform("the pangu model with layer 2 removed, its norms folded and its residual stream "
                                    "turned by a random orthogonal matrix, then trained 100 steps",
                                    lambda s, c, g, v: _drop_and_rotate(s, c, g, v), source="pangu", steps=100),
    "scratch_moe": Transform("an MoE of the pangu shape and tokenizer size trained from a "
                             f"fresh random initialisation on the base data ({BASE_STEPS} steps)",
                             _scratch(moe=True), steps=BASE_STEPS, lr=BASE_LR, data="base", independent=True),
    "scratch_vocab": Transform("the base architecture with the other tokenizer trained from "
                               f"a fresh random initialisation on the base data ({BASE_STEPS} steps)",
                               _scratch(moe=False), steps=BASE_STEPS, lr=BASE_LR, data="base", independent=True),
}
DEMO_MODELS = ("base-s0", "base-s0-finetune", "base-s0-obfuscate", "base-s0-upcycle", "base-s1")


def cache_root() -> Path:
    root = os.environ.get("PROVENANCE_CACHE") or Path.home() / ".cache" / "provenance"
    return Path(root) / "zoo" / f"v{ZOO_VERSION}-{corpus_digest()}"


@contextlib.contextmanager
def torch_threads(n: int):
    """torch on `n` intra-op threads inside the block (the thread count changes reduction order, hence bits)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def parse_name(name: str) -> tuple[int, str | None]:
    parts = name.split("-", 2)
    if len(parts) < 2 or parts[0] != "base" or not parts[1].startswith("s") or not parts[1][1:].isdigit():
        raise ValueError(f"zoo model names look like base-s0 or base-s0-finetune, not {name!r}")
    transform = parts[2] if len(parts) == 3 else None
    if transform is not None and transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; known: {', '.join(TRANSFORMS)}")
    return int(parts[1][1:]), transform


def _train_base(seed: int) -> tuple[dict, dict, Vocab]:
    vocab = Vocab.bytes_only()
    cfg = dict(BASE_CONFIG)
    state = init_state(cfg, torch.Generator().manual_seed(seed))
    state = train(state, cfg, vocab.encode(corpus_text("base")), steps=BASE_STEPS, lr=BASE_LR, seed=1000 + seed)
    return state, cfg, vocab


def _load(path: Path) -> tuple[dict, dict, Vocab]:
    from safetensors.torch import load_file
    state = load_file(path / "model.safetensors")
    cfg = json.loads((path / "config.json").read_text())
    tokens = json.loads((path / "vocab.json").read_text())
    merges = json.loads((path / "merges.json").read_text()) if (path / "merges.json").exists() else {}
    ordered = [t for t, _ in sorted(tokens.items(), key=lambda kv: kv[1])]
    return state, cfg, Vocab(ordered, {bytes.fromhex(k): v for k, v in merges.items()})


def recipe(name: str) -> dict:
    """What a zoo model is made from, independent of the bits training gives on a given CPU: the same recipe
    rebuilt on an AVX2 and an AVX-512 machine gives equivalent, not identical, weights."""
    return {"zoo_version": ZOO_VERSION, "corpus_digest": corpus_digest(), "model": name}


def _save(path: Path, state: dict, cfg: dict, vocab: Vocab, description: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp / "model.safetensors", metadata={"format": "pt"})
        config = {**cfg, "provenance_zoo": description, "provenance_zoo_recipe": recipe(path.name)}
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / "vocab.json").write_text(json.dumps(vocab.ids))
        if vocab.merges:
            (tmp / "merges.json").write_text(json.dumps({k.hex(): v for k, v in vocab.merges.items()}))
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build(name: str, root: Path | None = None) -> Path:
    """Path to the zoo model `name`, training it (and its parent) on first use."""
    seed, transform = parse_name(name)
    root = root or cache_root()
    path = root / name
    if (path / "model.safetensors").exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    with torch_threads(TRAIN_THREADS), torch.no_grad():
        if transform is None:
            with torch.enable_grad():
                state, cfg, vocab = _train_base(seed)
            description = f"base model, seed {seed}, {BASE_STEPS} steps on stdlib top-level modules"
        else:
            spec = TRANSFORMS[transform]
            if spec.independent:  # a control starts from nothing of the base
                state, cfg, vocab = dict(), dict(BASE_CONFIG), Vocab.bytes_only()
            else:
                parent = f"base-s{seed}" + (f"-{spec.source}" if spec.source else "")
                state, cfg, vocab = _load(build(parent, root))
            gen = torch.Generator().manual_seed(hash_seed(name))
            if spec.op is not None:
                state, cfg, vocab = spec.op(state, cfg, gen, vocab)
            data = vocab.encode(corpus_text(spec.data)) if spec.steps or spec.pre else None
            with torch.enable_grad():
                for k, phase in enumerate(spec.pre):
                    state = train(state, cfg, data, steps=phase.steps, lr=phase.lr, seed=hash_seed(f"{name}/pre{k}"),
                                  trainable=phase.trainable)
                if spec.steps:
                    state = train(state, cfg, data, steps=spec.steps, lr=spec.lr, seed=hash_seed(name + "/train"))
            description = (f"control named after base-s{seed}, independent of it: {spec.description}" if spec.independent
                           else f"derived from base-s{seed}: {spec.description}")
        if path.exists():  # a concurrent build won
            return path
        _save(path, state, cfg, vocab, description)
    return path


def hash_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def build_many(names, root: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    out = {}
    for name in names:
        if progress:
            progress(name)
        out[name] = build(name, root)
    return out
