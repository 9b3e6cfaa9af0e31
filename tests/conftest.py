import os

# Unit tests run the package at the smallest scale and never print progress bars.
os.environ.setdefault("LEARNTHY_QUIET", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "site: checks of the rendered book (run after the book is built)")
    config.addinivalue_line("markers", "cuda: runs on a CUDA GPU and compares with the CPU run (`make gpu-check`); "
                                       "skipped when torch.cuda.is_available() is False")
    config.addinivalue_line("markers", "flower: starts Flower (Ray simulation or SuperLink/SuperNode processes) in a "
                                       "subprocess with a hard timeout. `make test` deselects them: chapters 43 and 46 "
                                       "assert the same equalities (simulation and deployment = in-process engine) when "
                                       "its quick stage executes them; `make flower-e2e` runs these tests")


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` are skipped on a machine without a CUDA GPU."""
    import torch as _torch
    if _torch.cuda.is_available():
        return
    import pytest as _pytest
    skip = _pytest.mark.skip(reason="no CUDA GPU: run `make gpu-check` on a GPU machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test (as `make test` sets OMP_NUM_THREADS=1): on a loaded 2-core machine two
    OpenMP threads spin and slow small kernels by orders of magnitude. The old value is restored."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
