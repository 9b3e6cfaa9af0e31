"""Whole-book execution time from a clean checkout: every chapter at a scale, in parallel, one per core.

    .venv/bin/python benchmarks/book_time.py [--scale book] [--jobs 2] [--ref HEAD]

Clones the repository at `ref` into a scratch folder, executes every chapter there with `tools/chapters.py run`
(one OpenMP thread per chapter, `jobs` chapters at a time; the same command as `make book` when every chapter
is stale) and prints the per-chapter seconds, their sum and the wall-clock time. Nothing in the working tree
is touched. A timing depends on the machine and its load: quote it with the machine line it prints.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="book", choices=["quick", "book", "paper"])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--ref", default="HEAD")
    ap.add_argument("--keep", type=Path, default=None,
                    help="copy the executed notebooks here (e.g. for `tools/chapters.py compare DIR`)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="learnthy-book-time-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", a.ref], check=True)
        out = Path(tmp) / "executed"
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(clone / "tools" / "chapters.py"), "run", "--scale", a.scale,
                               "--jobs", str(a.jobs), "--out", str(out)], env=env)
        wall = time.perf_counter() - start
        if a.keep is not None:
            a.keep.mkdir(parents=True, exist_ok=True)
            for nb in out.glob("*.ipynb"):
                (a.keep / nb.name).write_text(nb.read_text())
        rows = []
        for nb in sorted(out.glob("*.ipynb")):
            meta = json.loads(nb.read_text())["metadata"].get("learnthy", {})
            rows.append((nb.stem, meta.get("seconds", float("nan")), meta.get("machine", "")))
    print(f"\n{'chapter':28s} {'seconds':>8s}")
    for name, sec, _ in rows:
        print(f"{name:28s} {sec:8.1f}")
    print(f"{'sum of chapters':28s} {sum(r[1] for r in rows):8.1f}")
    print(f"{'wall clock, ' + str(a.jobs) + ' at a time':28s} {wall:8.1f}")
    if rows:
        print(f"machine: {rows[0][2]}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
