import json
import os
from pathlib import Path

import pytest
from safetensors.torch import save_file

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")


def pytest_configure(config):
    # The tests do small-matrix work (tiny zoo models, fingerprint comparisons): one thread is fastest there,
    # and two threads on a busy 2-core machine oversubscribe the cores and run 4-20x slower.
    import torch
    torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run opt-in tests on real published weights")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="opt-in: real published weights; run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def zoo():
    """Build (or reuse from the cache) a zoo model by name."""
    from provenance.zoo import build
    return build


@pytest.fixture(scope="session")
def base_dir(zoo) -> Path:
    return zoo("base-s0")


@pytest.fixture(scope="session")
def base_state(base_dir):
    from safetensors.torch import load_file
    return load_file(base_dir / "model.safetensors")


def write_sharded(state: dict, directory: Path, shards: int = 3, config: dict | None = None) -> Path:
    """An HF-style sharded safetensors checkpoint with its index."""
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(state)
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: state[n].contiguous() for n in part}, directory / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    total = sum(v.numel() * v.element_size() for v in state.values())
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture
def write_sharded_fn():
    return write_sharded
