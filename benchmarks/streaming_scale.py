"""Fingerprint time and peak memory at real model widths, against a raw read of the same files and a naive full load.

Writes synthetic sharded bf16 safetensors checkpoints with Qwen2.5-14B shapes (hidden 5120, FFN 13824,
40 query / 8 key-value heads, a 32000-token embedding) at several depths, and a MoE layer of the same width
(64 routed experts of width 1344 and a shared expert of width 1344) in two layouts: one tensor per expert
(Qwen2-MoE names) and experts stacked [experts, out, in] per role (GGUF names). For each checkpoint, with the
files read once beforehand so that every run meets a warm page cache, three child processes are measured:

  raw    a sequential read of every file into one reused 16 MB buffer (the floor any reader pays);
  ours   `provenance fingerprint`'s pass (open, hash, fingerprint), with its time split into tensor reads,
         file hashing and the rest (compute);
  naive  every tensor loaded into memory first, then the same fingerprint computed from memory.

Peak RSS is each child's own high-water mark (VmHWM; ru_maxrss where there is no /proc, though on Linux that
also counts the parent's resident memory at fork time). Every child runs torch on the same number
of threads (default 1: a shared 2-core machine is not oversubscribed). The table gives ratios against the raw
read and the naive load measured in the same run, and checks that time grows linearly in bytes while peak
memory stays flat. Checkpoints live in a temporary folder removed at the end.

    python benchmarks/streaming_scale.py [--layers 1,3,7] [--moe-layers 1] [--threads 1] [--backend cuda]
                                         [--out benchmarks/results/streaming_scale_cpu.json]
    python benchmarks/streaming_scale.py --hidden 1024 --ffn 2816 --heads 16 --kv-heads 4 --layers 1,2 \
        --moe-layers 0      # a quick run at small widths
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEMA_VERSION = "1.0"
RAW_BUFFER = 16 << 20
GB = 1e9

CHILD = r"""
import json, resource, sys, time


def peak_mb():
    # VmHWM is this process image's own high-water mark; ru_maxrss would also count the parent's resident
    # memory at fork time (Linux carries it across exec)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


mode, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "raw":
    files = json.loads(sys.argv[4])
    buffer = bytearray(16 << 20)
    view = memoryview(buffer)
    base = peak_mb()
    start, cpu_start, total = time.perf_counter(), time.process_time(), 0
    for name in files:
        with open(name, "rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
    out = {"seconds": time.perf_counter() - start, "bytes": total}
else:
    import torch
    torch.set_num_threads(threads)
    from provenance.backends import get_backend
    from provenance.fingerprint import fingerprint_view
    from provenance.model import open_model
    from provenance.io.base import TensorSource
    backend = get_backend(sys.argv[4])
    spent = {"read": 0.0, "hash": 0.0}

    def timed(kind, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[kind] += time.perf_counter() - t0
        return wrapper

    base = peak_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    view = open_model(path)
    source = view.source
    source._load = timed("read", source._load)
    source._load_float32 = timed("read", source._load_float32)
    source._load_rows = timed("read", source._load_rows)
    source.sha256 = timed("hash", source.sha256)
    if mode == "naive":
        held = {n: source.get(n).clone() for n in source.infos()}  # the whole checkpoint resident
        loaded = time.perf_counter() - start
        source.get = lambda name, float32=False: held[name].float() if float32 else held[name]
        source.get_slice = lambda name, k, float32=False: held[name][k].float() if float32 else held[name][k]
        source.get_rows = lambda name, a, b, float32=False: held[name][a:b].float() if float32 else held[name][a:b]
    fp = fingerprint_view(view, backend)
    backend.synchronize()
    out = {"seconds": time.perf_counter() - start, "read_seconds": spent["read"], "hash_seconds": spent["hash"],
           "threads": torch.get_num_threads(), "layers": fp.num_layers}
    if mode == "naive":
        out["load_seconds"] = loaded
    view.close()
out.update({"mode": mode, "cpu_seconds": time.process_time() - cpu_start, "peak_rss_mb": peak_mb(), "start_rss_mb": base})
print(json.dumps(out))
"""


# --- synthetic checkpoints ------------------------------------------------------------------------------------
class Writer:
    """Shards of bf16 tensors written one at a time, with the index that names them."""

    def __init__(self, directory: Path, seed: int = 0):
        import torch
        self.directory, self.weight_map, self.bytes, self.largest = directory, {}, 0, 0
        self.g = torch.Generator().manual_seed(seed)
        self.shard: dict = {}
        self.count = 0

    def add(self, name: str, *shape, ones: bool = False) -> None:
        import torch
        t = torch.ones(*shape) if ones else torch.randn(*shape, generator=self.g) * 0.02
        self.shard[name] = t.to(torch.bfloat16)
        self.bytes += t.numel() * 2
        self.largest = max(self.largest, t.numel())

    def flush(self) -> None:
        from safetensors.torch import save_file
        if not self.shard:
            return
        self.count += 1
        fname = f"model-{self.count:05d}.safetensors"
        save_file(self.shard, self.directory / fname)
        self.weight_map.update({n: fname for n in self.shard})
        self.shard = {}

    def close(self, config: dict) -> dict:
        self.flush()
        (self.directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": self.weight_map}))
        (self.directory / "config.json").write_text(json.dumps(config))
        return {"bytes": sum(f.stat().st_size for f in self.directory.glob("*.safetensors")),
                "tensor_bytes": self.bytes, "largest_tensor_fp32_mb": self.largest * 4 / 2**20, "shards": self.count}


def _attention(w: Writer, prefix: str, names: dict, a) -> None:
    kv = a.hidden // a.heads * a.kv_heads
    w.add(prefix + names["q"], a.hidden, a.hidden)
    w.add(prefix + names["k"], kv, a.hidden)
    w.add(prefix + names["v"], kv, a.hidden)
    w.add(prefix + names["o"], a.hidden, a.hidden)


HF_ATTN = {"q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight", "v": "self_attn.v_proj.weight",
           "o": "self_attn.o_proj.weight"}
GGUF_ATTN = {"q": "attn_q.weight", "k": "attn_k.weight", "v": "attn_v.weight", "o": "attn_output.weight"}


def write_dense(directory: Path, layers: int, a) -> dict:
    w = Writer(directory)
    w.add("model.embed_tokens.weight", a.vocab, a.hidden)
    w.add("model.norm.weight", a.hidden, ones=True)
    for i in range(layers):
        p = f"model.layers.{i}."
        _attention(w, p, HF_ATTN, a)
        w.add(p + "input_layernorm.weight", a.hidden, ones=True)
        w.add(p + "post_attention_layernorm.weight", a.hidden, ones=True)
        w.add(p + "mlp.gate_proj.weight", a.ffn, a.hidden)
        w.add(p + "mlp.up_proj.weight", a.ffn, a.hidden)
        w.add(p + "mlp.down_proj.weight", a.hidden, a.ffn)
        w.flush()
    return w.close({"model_type": "qwen2", "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
                    "hidden_size": a.hidden, "num_hidden_layers": layers})


def write_moe(directory: Path, layers: int, a, stacked: bool) -> dict:
    """Qwen2-MoE names with one tensor per expert, or GGUF names with each role's experts stacked."""
    import torch
    w = Writer(directory)
    w.add("token_embd.weight" if stacked else "model.embed_tokens.weight", a.vocab, a.hidden)
    for i in range(layers):
        if stacked:
            p = f"blk.{i}."
            _attention(w, p, GGUF_ATTN, a)
            w.add(p + "attn_norm.weight", a.hidden, ones=True)
            w.add(p + "ffn_norm.weight", a.hidden, ones=True)
            w.add(p + "ffn_gate_inp.weight", a.experts, a.hidden)
            for role, shape in (("gate", (a.expert_ffn, a.hidden)), ("up", (a.expert_ffn, a.hidden)),
                                ("down", (a.hidden, a.expert_ffn))):
                w.add(f"{p}ffn_{role}_exps.weight", a.experts, *shape)
                w.flush()
                w.add(f"{p}ffn_{role}_shexp.weight", *shape)
        else:
            p = f"model.layers.{i}."
            _attention(w, p, HF_ATTN, a)
            w.add(p + "input_layernorm.weight", a.hidden, ones=True)
            w.add(p + "post_attention_layernorm.weight", a.hidden, ones=True)
            w.add(p + "mlp.gate.weight", a.experts, a.hidden)
            for e in range(a.experts):
                q = f"{p}mlp.experts.{e}."
                w.add(q + "gate_proj.weight", a.expert_ffn, a.hidden)
                w.add(q + "up_proj.weight", a.expert_ffn, a.hidden)
                w.add(q + "down_proj.weight", a.hidden, a.expert_ffn)
                if e % 16 == 15:
                    w.flush()
            q = f"{p}mlp.shared_expert."
            w.add(q + "gate_proj.weight", a.expert_ffn, a.hidden)
            w.add(q + "up_proj.weight", a.expert_ffn, a.hidden)
            w.add(q + "down_proj.weight", a.hidden, a.expert_ffn)
        w.flush()
    del torch
    config = {"num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "hidden_size": a.hidden}
    if not stacked:
        config["model_type"] = "qwen2_moe"
    return w.close(config)


def write_gguf(directory: Path, layers: int, a) -> dict:
    """A Qwen2.5-0.5B-shaped GGUF file (hidden 896, FFN 4864, 14/2 heads, a 151936-token embedding: the
    largest tensor, as in the published files), matrices in Q8_0, written with the gguf package."""
    import numpy as np
    import gguf
    hidden, ffn, heads, kv_heads, vocab = 896, 4864, 14, 2, 151936
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(directory / "model.gguf"), "qwen2")
    writer.add_block_count(layers)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    kv = hidden // heads * kv_heads
    shapes = {"token_embd.weight": (vocab, hidden)}
    for i in range(layers):
        shapes.update({f"blk.{i}.attn_q.weight": (hidden, hidden), f"blk.{i}.attn_k.weight": (kv, hidden),
                       f"blk.{i}.attn_v.weight": (kv, hidden), f"blk.{i}.attn_output.weight": (hidden, hidden),
                       f"blk.{i}.ffn_gate.weight": (ffn, hidden), f"blk.{i}.ffn_up.weight": (ffn, hidden),
                       f"blk.{i}.ffn_down.weight": (hidden, ffn), f"blk.{i}.attn_norm.weight": (hidden,),
                       f"blk.{i}.ffn_norm.weight": (hidden,)})
    largest = 0
    for name, shape in shapes.items():
        if len(shape) == 1:
            writer.add_tensor(name, np.ones(shape, dtype=np.float32))
            continue
        array = (rng.standard_normal(shape, dtype=np.float32) * 0.02)
        largest = max(largest, array.size)
        writer.add_tensor(name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                          raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    size = (directory / "model.gguf").stat().st_size
    return {"bytes": size, "tensor_bytes": size, "largest_tensor_fp32_mb": largest * 4 / 2**20, "shards": 1}


# --- measurement ------------------------------------------------------------------------------------------------
def _child(mode: str, path: Path, threads: int, extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    argv = [sys.executable, "-c", CHILD, mode, str(path), str(threads), extra]
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{mode} child failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _warm(files: list[str]) -> None:
    buffer = memoryview(bytearray(RAW_BUFFER))
    for name in files:
        with open(name, "rb", buffering=0) as fh:
            while fh.readinto(buffer):
                pass


def measure(name: str, directory: Path, info: dict, threads: int, naive: bool, backend: str) -> dict:
    files = sorted(str(p) for p in directory.iterdir() if p.suffix in (".safetensors", ".gguf"))
    _warm(files)
    row = {"checkpoint": name, **info, "raw": _child("raw", directory, threads, json.dumps(files)),
           "ours": _child("ours", directory, threads, backend)}
    if naive:
        row["naive"] = _child("naive", directory, threads, backend)
    return row


def report(rows: list[dict]) -> dict:
    """Print the table; return the derived figures (ratios, linearity, memory flatness)."""
    head = (f"{'checkpoint':20} {'GB':>5} {'raw s':>6} {'raw GB/s':>8} {'ours s':>7} {'CPU s':>6} {'read':>6} {'hash':>6} "
            f"{'compute':>7} {'ours RSS MB':>11} {'target MB':>9} {'naive s':>7} {'naive RSS MB':>12} "
            f"{'thru vs raw':>11} {'time vs naive':>13} {'RSS vs naive':>12}")
    print(head)
    for r in rows:
        o, raw, n = r["ours"], r["raw"], r.get("naive")
        compute = o["seconds"] - o["read_seconds"] - o["hash_seconds"]
        r["derived"] = {
            "raw_gb_per_s": r["bytes"] / GB / raw["seconds"],
            "ours_gb_per_s": r["bytes"] / GB / o["seconds"],
            "throughput_vs_raw": raw["seconds"] / o["seconds"],
            "read_vs_raw": raw["seconds"] / max(o["read_seconds"], 1e-9),
            "compute_seconds": compute,
            "rss_target_mb": r["largest_tensor_fp32_mb"] + 300,
            "rss_within_target": o["peak_rss_mb"] <= r["largest_tensor_fp32_mb"] + 300,
            "time_vs_naive": o["seconds"] / n["seconds"] if n else None,
            "rss_vs_naive": o["peak_rss_mb"] / n["peak_rss_mb"] if n else None,
        }
        d = r["derived"]
        naive_cols = (f"{n['seconds']:7.1f} {n['peak_rss_mb']:12.0f}" if n else f"{'-':>7} {'-':>12}")
        ratio_cols = (f"{d['time_vs_naive']:13.2f} {d['rss_vs_naive']:12.2f}" if n else f"{'-':>13} {'-':>12}")
        print(f"{r['checkpoint']:20} {r['bytes'] / GB:5.2f} {raw['seconds']:6.2f} {d['raw_gb_per_s']:8.2f} "
              f"{o['seconds']:7.1f} {o.get('cpu_seconds', float('nan')):6.1f} {o['read_seconds']:6.1f} {o['hash_seconds']:6.1f} {compute:7.1f} "
              f"{o['peak_rss_mb']:11.0f} {d['rss_target_mb']:9.0f} {naive_cols} {d['throughput_vs_raw']:11.3f} {ratio_cols}")
    dense = [r for r in rows if r["checkpoint"].startswith("dense")]
    scaling = {}
    if len(dense) >= 2:
        per_gb = [r["ours"]["seconds"] / (r["bytes"] / GB) for r in dense]
        rss = [r["ours"]["peak_rss_mb"] for r in dense]
        # time = fixed + marginal * bytes, least squares: a per-model fixed cost (hashing the side files, the
        # basis eigendecomposition) makes small checkpoints dearer per GB without any superlinear growth
        gb = [r["bytes"] / GB for r in dense]
        secs = [r["ours"]["seconds"] for r in dense]
        import numpy as np
        slope, fixed = (float(c) for c in np.polyfit(gb, secs, 1))
        residual = max(abs(fixed + slope * g - t) / t for g, t in zip(gb, secs))
        scaling = {"seconds_per_gb": per_gb, "seconds_per_gb_max_over_min": max(per_gb) / min(per_gb),
                   "linear_fit": {"fixed_seconds": fixed, "seconds_per_gb": slope, "max_relative_residual": residual},
                   "peak_rss_mb": rss, "peak_rss_max_over_min": max(rss) / min(rss),
                   "bytes_max_over_min": dense[-1]["bytes"] / dense[0]["bytes"]}
        print(f"dense scaling: bytes x{scaling['bytes_max_over_min']:.2f}; ours seconds per GB "
              + ", ".join(f"{v:.1f}" for v in per_gb) + f" (max/min {scaling['seconds_per_gb_max_over_min']:.2f}); "
              f"fit {fixed:.1f} s + {slope:.1f} s/GB (largest residual {residual:.1%}); "
              f"peak RSS MB " + ", ".join(f"{v:.0f}" for v in rss) + f" (max/min {scaling['peak_rss_max_over_min']:.2f})")
    return scaling


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="1,3,7", help="dense depths, comma-separated (default 1,3,7: about 0.9, 2.0, 4.2 GB)")
    ap.add_argument("--moe-layers", type=int, default=1, help="MoE depth (0: no MoE checkpoints)")
    ap.add_argument("--hidden", type=int, default=5120)
    ap.add_argument("--ffn", type=int, default=13824)
    ap.add_argument("--heads", type=int, default=40)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--expert-ffn", type=int, default=1344)
    ap.add_argument("--gguf-layers", type=int, default=4, help="layers of the Qwen2.5-0.5B-shaped Q8_0 GGUF file (0: none)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every child (default 1)")
    ap.add_argument("--backend", default="cpu", help="where the fingerprint computes (cpu, cuda, npu; default cpu)")
    ap.add_argument("--no-naive", action="store_true", help="skip the full-load baseline")
    ap.add_argument("--tmp", type=Path, default=None, help="where the checkpoints are written (default: the system's)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    plan = [(f"dense-{n}L", lambda d, n=n: write_dense(d, n, a)) for n in map(int, a.layers.split(",")) if n > 0]
    if a.moe_layers > 0:
        plan += [(f"moe-{a.moe_layers}L-unstacked", lambda d: write_moe(d, a.moe_layers, a, stacked=False)),
                 (f"moe-{a.moe_layers}L-stacked", lambda d: write_moe(d, a.moe_layers, a, stacked=True))]
    if a.gguf_layers > 0:
        plan.append((f"gguf-q8_0-{a.gguf_layers}L", lambda d: write_gguf(d, a.gguf_layers, a)))
    rows = []
    started = time.perf_counter()
    for name, write in plan:
        directory = Path(tempfile.mkdtemp(prefix="provenance-bench-", dir=a.tmp))
        try:
            info = write(directory)
            print(f"[{time.perf_counter() - started:6.0f}s] {name}: {info['bytes'] / GB:.2f} GB written; measuring",
                  file=sys.stderr, flush=True)
            rows.append(measure(name, directory, info, a.threads, not a.no_naive, a.backend))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"torch threads per child: {a.threads}; widths hidden {a.hidden}, FFN {a.ffn}, heads {a.heads}/{a.kv_heads}, "
          f"vocab {a.vocab}; MoE {a.experts} x {a.expert_ffn} + shared {a.expert_ffn}")
    scaling = report(rows)
    if a.out:
        import provenance
        from provenance.atomic import write_json
        from provenance.backends import get_backend
        import torch
        torch.set_num_threads(a.threads)
        write_json(a.out, {"benchmark": "streaming_scale", "schema_version": SCHEMA_VERSION,
                           "tool_version": provenance.__version__, "identity": get_backend(a.backend).identity(),
                           "threads": a.threads, "shapes": {k: getattr(a, k) for k in (
                               "hidden", "ffn", "heads", "kv_heads", "vocab", "experts", "expert_ffn")},
                           "checkpoints": rows, "dense_scaling": scaling})
    return 0


if __name__ == "__main__":
    sys.exit(main())
