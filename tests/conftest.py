import os

# Unit tests run the package at the smallest scale and never print progress bars.
os.environ.setdefault("LEARNTHY_QUIET", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "site: checks of the rendered book (run after the book is built)")


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
