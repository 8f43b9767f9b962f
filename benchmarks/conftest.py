import os

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")


import pytest  # noqa: E402
import torch  # noqa: E402

# Benchmarks here are small-matrix work: one thread is the fastest, and on a shared 2-core machine two threads
# oversubscribe the cores (the 48-layer compare measured 0.6-0.9 s on 1 thread, 7-30 s on 2).
THREADS = 1


@pytest.fixture(scope="module", autouse=True)
def pinned_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(saved)
