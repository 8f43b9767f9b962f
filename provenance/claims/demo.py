"""Demo claims built from the embedded zoo: one honest training segment and spoofs of it.

The honest segment is trained with the zoo's own hand-written forward (provenance/zoo/tiny.py) on
one thread; the verifier replays it with transformers on its default thread count, so the honest
distance is a real cross-implementation, cross-schedule difference, not zero by construction.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..atomic import write_text
from ..zoo import build
from ..zoo.build import torch_threads
from ..zoo.corpus import Vocab, corpus_text
from ..zoo.tiny import forward

WARMUP, STEPS, LATER = 20, 8, 32    # optimizer steps before the segment, in it, and to the "later" checkpoint
BATCH, SEQ = 8, 64
RECIPE = {"optimizer": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01,
          "grad_clip": 1.0, "steps": STEPS, "loss": "causal-lm"}
# name -> (what the spoof does, the verdict it must get)
CLAIMS = {
    "honest": ("the true start, data and end of 8 training steps", "consistent"),
    "spoof-other-lineage": ("the end is a model of another lineage (zoo base-s1)", "inconsistent"),
    "spoof-interpolated": ("the end is a point on the line from start toward a checkpoint 32 steps later", "inconsistent"),
    "spoof-wrong-data": ("the published batches are not the ones the end was trained on", "inconsistent"),
}


def _batches(seed: int, n: int) -> torch.Tensor:
    data = Vocab.bytes_only().encode(corpus_text("other"))
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(data) - SEQ - 1, (n, BATCH), generator=gen)
    return torch.stack([torch.stack([data[s: s + SEQ] for s in row.tolist()]) for row in starts])


def _train(state: dict, cfg: dict, batches: torch.Tensor, opt_state: dict | None = None, dtype: str = "fp32"):
    """AdamW steps with the zoo's hand-written forward (bf16: under CPU autocast, fp32 master weights);
    returns (state, optimizer state by name). Runs on the caller's thread count (build_demo_claims: one)."""
    params = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    opt = torch.optim.AdamW(list(params.values()), lr=RECIPE["lr"], betas=tuple(RECIPE["betas"]), eps=RECIPE["eps"],
                            weight_decay=RECIPE["weight_decay"])
    if opt_state:
        for k, p in params.items():
            opt.state[p] = {key: t.clone() for key, t in opt_state[k].items()}
    for ids in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            logits = forward(params, cfg, ids).float()
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), RECIPE["grad_clip"])
        opt.step()
    return {k: p.detach().clone() for k, p in params.items()}, {k: dict(opt.state[p]) for k, p in params.items()}


def _save_checkpoint(directory: Path, state: dict, zoo_dir: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, directory / "model.safetensors", metadata={"format": "pt"})
    for name in ("config.json", "vocab.json"):
        shutil.copyfile(zoo_dir / name, directory / name)


def _claim_toml(origin_note: str, dtype: str) -> str:
    return f'''# {origin_note}
[model]
path = "end"
label = "demo-tiny"

[claim]
origin = "from-scratch"
vendor = "provenance demo"
chip = "CPU"
framework = "PyTorch"
dtype = "{dtype}"

[[suspects]]
path = "suspect"
label = "base-s1"

[segment]
start = "start"
optimizer = "start/optimizer.safetensors"
batches = "batches.safetensors"
recipe = "recipe.json"
end = "end"
'''


def build_demo_claims(out: Path, progress: Callable[[str], None] | None = None, dtype: str = "fp32") -> dict[str, Path]:
    """Write the honest claim and its spoofs under `out`, one folder each.

    Args:
        out: a directory to create the claim folders in.
        progress: called with a short line per stage.
        dtype: "fp32", or "bf16": the segment is trained under bf16 autocast and the claims say bf16.
    Returns:
        claim name -> path of its claim.toml.
    """
    out = Path(out)
    with torch_threads(1):  # one thread: no reduction order left to the scheduler
        if progress:
            progress("training the demo segment")
        base, other = build("base-s0"), build("base-s1")
        from safetensors.torch import load_file
        cfg = json.loads((base / "config.json").read_text())
        state0 = load_file(base / "model.safetensors")
        start, opt_state = _train(state0, cfg, _batches(1, WARMUP))
        data = _batches(2, LATER)
        end, _ = _train(start, cfg, data[:STEPS], opt_state, dtype)
        later, _ = _train(start, cfg, data, opt_state, dtype)
    interpolated = {k: start[k] + (STEPS / LATER) * (later[k] - start[k]) for k in start}
    ends = {"honest": end, "spoof-other-lineage": load_file(other / "model.safetensors"),
            "spoof-interpolated": interpolated, "spoof-wrong-data": end}
    paths = {}
    for name, (what, _) in CLAIMS.items():
        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        _save_checkpoint(folder / "start", start, base)
        save_file({f"{k}.{key}": opt_state[k][key].contiguous() for k in start for key in ("exp_avg", "exp_avg_sq")},
                  folder / "start" / "optimizer.safetensors", metadata={"step": str(int(opt_state[next(iter(start))]["step"]))})
        batches = _batches(3, STEPS) if name == "spoof-wrong-data" else data[:STEPS]
        save_file({"input_ids": batches.contiguous()}, folder / "batches.safetensors")
        write_text(folder / "recipe.json", json.dumps(RECIPE, indent=1))
        _save_checkpoint(folder / "end", ends[name], base)
        _save_checkpoint(folder / "suspect", load_file(other / "model.safetensors"), other)
        write_text(folder / "claim.toml", _claim_toml(f"demo claim {name}: {what}", dtype))
        paths[name] = folder / "claim.toml"
    return paths


def run_demo_claims(out: Path, progress: Callable[[str], None] | None = None, backend_name: str = "cpu"):
    """Build and verify the honest claim and every spoof.

    Args:
        out: directory for the claim folders (created).
        progress: called with a short line per stage.
        backend_name: backend for fingerprinting.
    Returns:
        (results: claim name -> claim document, expected: claim name -> expected verdict, sections: report Sections).
    """
    from ..report.render import Section
    from .report import replay_figure
    from .verify import verify_claim
    paths = build_demo_claims(out, progress)
    results = {}
    for name, path in paths.items():
        if progress:
            progress(f"verifying {name}")
        results[name] = verify_claim(path, backend_name, progress)
    replays = {name: next(c["data"] for c in r["checks"] if c["name"] == "replay") for name, r in results.items()}
    honest = replays["honest"]["ratio"]
    nearest = min(d["ratio"] for n, d in replays.items() if n != "honest")
    rows = [[name, CLAIMS[name][0], r["verdict"], CLAIMS[name][1], replays[name]["ratio"],
             next(c["detail"] for c in r["checks"] if c["name"] == "replay")[:160]] for name, r in results.items()]
    section = Section(
        "Platform claims: an honest training segment and three spoofs",
        f"Each claim says the model was trained on this CPU in fp32 and publishes an {STEPS}-step training segment. "
        f"The verifier replays it with transformers and calibrates its tolerance by replaying again with another thread "
        f"count, reversed matmul reductions and another CPU instruction set. Honest distance {honest:.3g} envelopes; "
        f"nearest spoof {nearest:.3g} envelopes; margin {nearest / honest:.3g}x. An accepted replay is evidence, not proof: "
        "tolerance-based replay can be spoofed by an adversary who forges a trajectory the verifier does not test.",
        ["claim", "what it does", "verdict", "expected", "replay distance (envelopes)", "reason"], rows,
        [replay_figure(replays, "claims-replay")])
    return results, {n: CLAIMS[n][1] for n in results}, [section]
