import os

# Unit tests run the package at the smallest scale and never print progress bars.
os.environ.setdefault("LEARNTHY_QUIET", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "site: checks of the rendered book (run after the book is built)")
