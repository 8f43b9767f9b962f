"""Peak memory and time of the streaming fingerprint pass against a naive full load, same run.

Writes a synthetic sharded safetensors checkpoint (default about 0.5 GB), then in separate
processes: (1) the fingerprint pass, which reads one tensor at a time; (2) the baseline that
loads every tensor into memory first (what a load-the-whole-model tool does), then fingerprints
the same weights. Prints peak resident memory of each and the ratios.

    python benchmarks/streaming_memory.py [--layers 8] [--hidden 1024] [--ffn 2816] [--threads 1]

Both children run torch on the same thread count (default 1, so that a shared 2-core machine is not
oversubscribed), so the time ratio compares streaming with loading, not one scheduler with another.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import torch
from provenance.backends import get_backend
from provenance.fingerprint import fingerprint_view
from provenance.model import open_model
mode, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)


def peak_kb():
    # this process image's own high-water mark: ru_maxrss also counts the parent's resident memory at fork
    try:
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


base = peak_kb()
start = time.perf_counter()
view = open_model(path)
if mode == "full-load":
    held = {n: view.source.get(n).clone() for n in view.source.infos()}  # every tensor resident at once
    real_get = view.source.get
    view.source.get = lambda name, float32=False: held[name].float() if float32 else held[name]
    view.source.get_slice = lambda name, k, float32=False: held[name][k].float() if float32 else held[name][k]
    view.source.get_rows = lambda name, a, b, float32=False: held[name][a:b].float() if float32 else held[name][a:b]
fp = fingerprint_view(view, get_backend("cpu"))
elapsed = time.perf_counter() - start
peak = peak_kb()
print(json.dumps({"mode": mode, "seconds": elapsed, "peak_rss_mb": peak / 1024, "import_rss_mb": base / 1024}))
"""


def write_checkpoint(directory: Path, layers: int, hidden: int, ffn: int, vocab: int) -> int:
    import torch
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(0)
    weight_map, total, largest = {}, 0, 0
    kv = hidden // 4
    for i in range(layers):
        shard = {
            f"model.layers.{i}.self_attn.q_proj.weight": torch.randn(hidden, hidden, generator=g) * 0.02,
            f"model.layers.{i}.self_attn.k_proj.weight": torch.randn(kv, hidden, generator=g) * 0.02,
            f"model.layers.{i}.self_attn.v_proj.weight": torch.randn(kv, hidden, generator=g) * 0.02,
            f"model.layers.{i}.self_attn.o_proj.weight": torch.randn(hidden, hidden, generator=g) * 0.02,
            f"model.layers.{i}.mlp.gate_proj.weight": torch.randn(ffn, hidden, generator=g) * 0.02,
            f"model.layers.{i}.mlp.up_proj.weight": torch.randn(ffn, hidden, generator=g) * 0.02,
            f"model.layers.{i}.mlp.down_proj.weight": torch.randn(hidden, ffn, generator=g) * 0.02,
            f"model.layers.{i}.input_layernorm.weight": torch.ones(hidden),
            f"model.layers.{i}.post_attention_layernorm.weight": torch.ones(hidden),
        }
        if i == 0:
            shard["model.embed_tokens.weight"] = torch.randn(vocab, hidden, generator=g) * 0.02
        name = f"model-{i + 1:05d}-of-{layers:05d}.safetensors"
        save_file(shard, directory / name)
        for k, v in shard.items():
            weight_map[k] = name
            total += v.numel() * 4
            largest = max(largest, v.numel() * 4)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return total, largest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in both children (default 1)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        total, largest = write_checkpoint(Path(tmp), args.layers, args.hidden, args.ffn, args.vocab)
        results = {}
        for mode in ("full-load", "streaming"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, tmp, str(args.threads)], capture_output=True, text=True, check=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    s, f = results["streaming"], results["full-load"]
    s_extra, f_extra = s["peak_rss_mb"] - s["import_rss_mb"], f["peak_rss_mb"] - f["import_rss_mb"]
    print(f"checkpoint: {total / 2**20:.0f} MB in {args.layers} shards, largest tensor {largest / 2**20:.0f} MB")
    print(f"{'':12} {'peak RSS MB':>12} {'above import':>13} {'seconds':>8}")
    for name, r in (("full load", f), ("streaming", s)):
        print(f"{name:12} {r['peak_rss_mb']:12.0f} {r['peak_rss_mb'] - r['import_rss_mb']:13.0f} {r['seconds']:8.2f}")
    print(f"memory above import, streaming / full load: {s_extra / max(f_extra, 1e-9):.3f}")
    print(f"streaming memory above import / checkpoint size: {s_extra / (total / 2**20):.3f}")
    print(f"time, streaming / full load: {s['seconds'] / f['seconds']:.2f}")
    if args.out:
        from provenance.backends import get_backend
        from provenance.atomic import write_json
        write_json(args.out, {"benchmark": "streaming_memory", "identity": get_backend("cpu").identity(),
                              "checkpoint_mb": total / 2**20, "largest_tensor_mb": largest / 2**20, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
