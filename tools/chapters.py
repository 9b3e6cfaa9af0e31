"""Execute the book's chapters, prove their stored outputs current, and generate the results and status pages.

    python tools/chapters.py run [--scale S] [--jobs J] [--inplace | --out DIR] [--stale] [--wall SEC] [CHAPTER ...]
    python tools/chapters.py stale                  # chapters whose stored outputs do not match their code
    python tools/chapters.py compare NEW_DIR [CHAPTER ...]   # re-executed claims vs the stored ones
    python tools/chapters.py gluecheck DIR          # every {glue} key the prose uses is produced in DIR
    python tools/chapters.py pages                  # book/results.md and book/status.md

A chapter's *fingerprint* is a hash of its code cells and of the package modules it imports (transitively;
comments and docstrings of the modules do not count), together with the scale. `run` records it in the
notebook's metadata (`learnthy.fingerprint`) with the execution time and the machine; `stale` lists the
chapters whose recorded fingerprint differs from the current one, i.e. whose stored outputs may not be what
their code prints. CHAPTER is a notebook stem (``10_diffusion``) or path; default: every chapter in _toc.yml.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import json
import resource
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
PKG = ROOT / "learnthy_nb"
PAPER = ROOT / "paper"
EXECUTING = ROOT / "book" / "_build" / "executing"     # in-place runs are written here, then moved
CLAIM_MIME = "application/vnd.learnthy.claim+json"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)")
IMPORT_RE = re.compile(r"^\s*(?:from\s+learnthy_nb\.(\w+)\s+import|import\s+learnthy_nb\.(\w+)|"
                       r"from\s+learnthy_nb\s+import\s+([\w ,()]+)|from\s+\.(\w+)\s+import)", re.M)


# ----------------------------------------------------------------------------------------------- notebooks
def read_nb(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_nb(path: Path, nb: dict) -> None:
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def toc_parts() -> list[tuple[str, list[str]]]:
    """[(part caption, [file, ...])] in the order of _toc.yml (files without extension)."""
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = []
    for part in toc.get("parts", []):
        files, stack = [], list(part.get("chapters", []))
        while stack:
            entry = stack.pop(0)
            files.append(entry["file"])
            stack[0:0] = entry.get("sections", [])
        parts.append((part.get("caption", ""), files))
    return parts


def chapters(names: list[str] | None = None) -> list[Path]:
    """The chapter notebooks, in the order of the table of contents (or the named ones)."""
    if names:
        out = []
        for name in names:
            p = Path(name)
            p = p if p.suffix == ".ipynb" and p.exists() else NBS / f"{Path(name).stem}.ipynb"
            if not p.exists():
                raise SystemExit(f"no chapter {name!r} (looked for {p})")
            out.append(p.resolve())
        return out
    listed = [ROOT / f"{f}.ipynb" for _, files in toc_parts() for f in files if f.startswith("nbs/")]
    rest = sorted(set(NBS.glob("*.ipynb")) - set(listed))
    return listed + rest


# --------------------------------------------------------------------------------------------- fingerprint
def _imports(text: str) -> set[str]:
    found = set()
    for m in IMPORT_RE.finditer(text):
        if m.group(1) or m.group(2) or m.group(4):
            found.add(m.group(1) or m.group(2) or m.group(4))
        else:
            found |= {n.strip() for n in m.group(3).replace("(", " ").replace(")", " ").split(",") if n.strip()}
    return {name for name in found if (PKG / f"{name}.py").exists()}


def _module_digest(name: str) -> str:
    """The module's code without comments and docstrings (they cannot change a result)."""
    tree = ast.parse((PKG / f"{name}.py").read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def package_deps(nb: dict) -> list[str]:
    """The learnthy_nb modules a chapter imports, with the modules they import in turn (sorted)."""
    todo = _imports("\n".join(src(c) for c in nb["cells"] if c["cell_type"] == "code"))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= _imports((PKG / f"{name}.py").read_text()) - seen
    return sorted(seen)


def fingerprint(nb: dict, scale: str) -> str:
    h = hashlib.sha256(f"scale={scale}\n".encode())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            h.update(src(cell).encode() + b"\n\x00cell\x00\n")
    for name in package_deps(nb):
        h.update(f"\x00module {name}\x00".encode() + _module_digest(name).encode())
    return h.hexdigest()[:16]


def stale(paths: list[Path], scale: str = "book") -> list[tuple[Path, str]]:
    """[(chapter, reason)] for chapters whose stored outputs are not proven current."""
    out = []
    for p in paths:
        nb = read_nb(p)
        meta = nb.get("metadata", {}).get("learnthy", {})
        now = fingerprint(nb, scale)
        if not meta:
            out.append((p, "never executed by tools/chapters.py (no learnthy metadata)"))
        elif meta.get("scale") != scale:
            out.append((p, f"stored outputs are at scale {meta.get('scale')!r}, not {scale!r}"))
        elif meta.get("fingerprint") != now:
            out.append((p, f"code changed since execution (stored {meta.get('fingerprint')}, now {now})"))
    return out


# ------------------------------------------------------------------------------------------------ execution
def machine(env: dict) -> str:
    """machine_info() as a chapter's kernel sees it (same environment, after the chapter's `setup`, which pins torch
    to one thread on a CPU whatever OMP_NUM_THREADS says), with the CPU's family and model numbers and the vector
    instruction set of torch's CPU kernels: two CPUs with the same name (a virtual machine's "AMD EPYC", say) can be
    different generations, whose kernels round differently."""
    code = ("from learnthy_nb.core import machine_info, setup; import torch; setup(0); "
            "print(machine_info() + '; torch CPU kernels: ' + torch.backends.cpu.get_cpu_capability())")
    try:
        line = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=ROOT, env=env).stdout.strip()
    except Exception as err:       # noqa: BLE001 - the machine line is informative only
        return f"unknown ({err})"
    try:
        info = dict(l.split(":", 1) for l in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines() if ":" in l)
        info = {k.strip(): v.strip() for k, v in info.items()}
        if "cpu family" in info and "model" in info:
            name, sep, rest = line.partition(" (")
            line = f"{name} (family {info['cpu family']} model {info['model']}, {rest}" if sep else line
    except OSError:
        pass
    return line


def _execute_one(path: str, out: str, scale: str, timeout: int) -> None:
    """Child process: execute one notebook with nbclient, write it to `out` (stamped) even when a cell fails."""
    import nbclient
    import nbformat
    nb = nbformat.read(path, as_version=4)
    # The stored outputs go first: a cell the execution never reaches (a failure, a kernel that did not start)
    # must not carry the stored run's output into the new notebook, where `compare` would read it as reproduced.
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    start = time.perf_counter()
    error = None
    for attempt in range(3):
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                         resources={"metadata": {"path": str(NBS)}})
        try:
            client.execute()
            error = None
            break
        except Exception as err:   # noqa: BLE001 - reported to the parent with the partial notebook
            error = err
            # Kernels started at the same moment can pick the same free port (jupyter_client finds free ports by
            # binding and releasing them): the kernel then dies before its first reply. Start it again; a
            # failure inside the chapter's own code is not retried.
            if not isinstance(err, RuntimeError) or "Kernel died before replying" not in str(err):
                break
            time.sleep(1 + attempt)
    seconds = time.perf_counter() - start
    # CPU time of the kernel (a child of this process, reaped when nbclient shuts it down): what the chapter costs
    # on a dedicated core, whatever else the machine was doing (wall-clock seconds grow on a loaded machine).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = children.ru_utime + children.ru_stime
    for cell in nb.cells:           # volatile metadata: a re-run must not rewrite every cell
        cell.get("metadata", {}).pop("execution", None)
    data = json.loads(nbformat.writes(nb))
    data["metadata"]["learnthy"] = {"fingerprint": fingerprint(read_nb(path), scale), "scale": scale,
                                    "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
                                    "executed": _dt.date.today().isoformat(),
                                    "machine": os.environ.get("LEARNTHY_MACHINE", "")}
    write_nb(Path(out), data)
    if error is not None:
        msg = str(error).strip().splitlines()
        sys.stderr.write("\n".join(msg[-25:]) + "\n")
        raise SystemExit(1)


def merge_outputs(current: dict, executed: dict) -> dict | None:
    """The outputs of an in-place execution stored into the chapter as it is now: the current file's cells, each code
    cell replaced by its executed counterpart (same id), and the executed notebook's metadata (the stamp). Markdown
    edited while the chapter executed is kept; None if the code cells (ids and sources, in order) changed meanwhile,
    since the outputs would then not be what the code prints."""
    def code(nb):
        return [(c.get("id"), "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for c in nb["cells"] if c["cell_type"] == "code"]
    if code(current) != code(executed):
        return None
    by_id = {c.get("id"): c for c in executed["cells"] if c["cell_type"] == "code"}
    cells = [by_id[c.get("id")] if c["cell_type"] == "code" else c for c in current["cells"]]
    return {**current, "cells": cells, "metadata": executed["metadata"]}


def _mostly_waits(nb: dict) -> bool:
    """The stored run spent under half its wall-clock time on the CPU (a chapter that waits on other processes)."""
    stamp = nb.get("metadata", {}).get("learnthy", {})
    return bool(stamp.get("seconds")) and stamp.get("cpu_seconds") is not None and stamp["cpu_seconds"] < 0.5 * stamp["seconds"]


def run(paths: list[Path], scale: str, jobs: int, out_dir: Path | None, wall: int | None, timeout: int,
        waiting_jobs: int = 0) -> int:
    """Execute chapters (up to `jobs` at once, one OpenMP thread each, plus up to `waiting_jobs` chapters that mostly
    wait, see `_mostly_waits`); one line per chapter as it ends."""
    env = dict(os.environ, LEARNTHY_SCALE=scale, LEARNTHY_QUIET="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["LEARNTHY_MACHINE"] = machine(env)
    (out_dir or EXECUTING).mkdir(parents=True, exist_ok=True)
    failures, total, t0 = [], len(paths), time.perf_counter()
    done = 0
    print(f"executing {total} chapter(s) at scale {scale!r}, {jobs} at a time"
          + (f" (+{waiting_jobs} for chapters that mostly wait)" if waiting_jobs > 0 else "")
          + (f", into {out_dir}" if out_dir else ", in place"), flush=True)

    def one(p: Path):
        target = (out_dir / p.name) if out_dir else EXECUTING / p.name
        before = read_nb(p)
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "_exec", str(p), str(target), scale, str(timeout)],
                                  env=env, capture_output=True, text=True, timeout=wall)
            ok, log = proc.returncode == 0, proc.stderr
        except subprocess.TimeoutExpired:
            ok, log = False, f"stopped after the wall-clock limit of {wall} s"
        seconds = time.perf_counter() - start
        moved = []
        if ok and out_dir is None:
            executed = read_nb(target)
            merged = merge_outputs(read_nb(p), executed)
            target.unlink()
            if merged is None:
                ok, log = False, "the chapter's code cells changed while it was executing: its outputs were not stored"
            else:
                moved = [("agrees:    " if agree else "DISAGREES: ") + why
                         for agree, why in compare_claims(before, executed)]
                write_nb(p, merged)
        elif out_dir is None and target.exists():
            target.unlink()
        return p, ok, seconds, log, moved

    # Longest first (by the stored run's time), so that the last chapter to start is a short one. With
    # waiting_jobs > 0, chapters whose stored kernel CPU time is under half their wall time get slots of their own.
    # Off by default: the Flower chapters look like that, but their SuperLink/SuperNode processes and Ray workers
    # (not the kernel's children that rusage counts) keep ~1.6 cores busy (46 at quick scale: 134 CPU-s of the
    # machine in 85 s of wall time), so extra slots oversubscribed the cores: on two cores the quick stage took
    # 425 s with two extra slots and 316 s without.
    order = sorted(paths, key=lambda p: -read_nb(p).get("metadata", {}).get("learnthy", {}).get("seconds", 1e9))
    waiting = [p for p in order if _mostly_waits(read_nb(p))] if waiting_jobs > 0 else []
    busy = [p for p in order if p not in waiting]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
            ThreadPoolExecutor(max_workers=max(1, waiting_jobs)) as wait_pool:
        futures = [wait_pool.submit(one, p) for p in waiting] + [pool.submit(one, p) for p in busy]
        for future in as_completed(futures):
            p, ok, seconds, log, moved = future.result()
            done += 1
            print(f"[{done:2d}/{total}] {p.stem:28s} {seconds:7.1f} s  {'ok' if ok else 'FAILED'}", flush=True)
            for line in moved:
                print(f"        claim {line}", flush=True)
            if not ok:
                failures.append(p.stem)
                print("        " + "\n        ".join(log.strip().splitlines()[-25:]), flush=True)
    print(f"{total - len(failures)}/{total} chapters executed in {time.perf_counter() - t0:.0f} s wall", flush=True)
    if failures:
        print("FAILED: " + ", ".join(failures), flush=True)
    return 1 if failures else 0


# ----------------------------------------------------------------------------------------------------- claims
def claims(nb: dict) -> list[dict]:
    """The claims a notebook recorded (the outputs `record_claim` displayed), in order."""
    found = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            data = o.get("data", {})
            if CLAIM_MIME in data:
                c = data[CLAIM_MIME]
                found.append(json.loads(c) if isinstance(c, str) else c)
    return found


def compare_claims(stored_nb: dict, new_nb: dict) -> list[tuple[bool, str]]:
    """[(agrees, explanation)] for each stored claim; a claim missing from the new run does not agree."""
    sys.path.insert(0, str(ROOT))
    from learnthy_nb.core import claim_agrees
    new = {c["key"]: c for c in claims(new_nb)}
    out = []
    for c in claims(stored_nb):
        if c["key"] not in new:
            out.append((False, f"{c['key']}: not recorded by the re-execution"))
        else:
            out.append(claim_agrees(c, new[c["key"]]))
    return out


def _text_outputs(cell: dict) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(src({"source": o.get("text", "")}))
        elif "text/plain" in o.get("data", {}):
            parts.append(src({"source": o["data"]["text/plain"]}))
    return "".join(parts).strip()


def compare(paths: list[Path], new_dir: Path) -> int:
    """Re-executed chapters in `new_dir` against the stored ones: claims by tolerance, checked cells exactly."""
    bad = 0
    for p in paths:
        q = new_dir / p.name
        if not q.exists():
            print(f"{p.stem}: not executed in {new_dir}")
            bad += 1
            continue
        stored, new = read_nb(p), read_nb(q)
        results = compare_claims(stored, new)
        s_cells = [c for c in stored["cells"] if c["cell_type"] == "code" and src(c).startswith(CHECK_MARK)]
        n_cells = {src(c): c for c in new["cells"] if c["cell_type"] == "code"}
        for c in s_cells:
            same = src(c) in n_cells and _text_outputs(n_cells[src(c)]) == _text_outputs(c)
            first = src(c).splitlines()[1] if len(src(c).splitlines()) > 1 else ""
            results.append((same, f"exact-output cell `{first[:60]}`: {'same text' if same else 'DIFFERENT text'}"))
        for ok, why in results:
            print(f"{p.stem:28s} {'ok  ' if ok else 'FAIL'} {why}")
            bad += not ok
        if not results:
            print(f"{p.stem:28s} FAIL no recorded claim to compare")
            bad += 1
    print(f"{'all agree' if not bad else f'{bad} disagreement(s)'}")
    return 1 if bad else 0


def gluecheck(paths: list[Path], run_dir: Path) -> int:
    """Every glue key referenced in a chapter's prose is glued by its execution in `run_dir`."""
    bad = 0
    for p in paths:
        nb = read_nb(run_dir / p.name)
        used = {m for c in nb["cells"] if c["cell_type"] == "markdown" for m in GLUE_REF.findall(src(c))}
        made = {o.get("metadata", {}).get("scrapbook", {}).get("name") for c in nb["cells"]
                for o in c.get("outputs", []) if c["cell_type"] == "code"}
        missing = sorted(used - made)
        if missing:
            bad += 1
            print(f"{p.stem}: prose uses glue keys its execution did not produce: {', '.join(missing)}")
    print(f"glue keys: {'all produced' if not bad else f'{bad} chapter(s) with missing keys'}")
    return 1 if bad else 0


# ------------------------------------------------------------------------------------------------------ pages
def _num(x) -> str:
    return "–" if x is None else f"{x:.3g}".replace("-", "−")


def _measured(c: dict) -> str:
    s = _num(c["measured"])
    return s if c["ci_low"] is None else f"{s} [{_num(c['ci_low'])}, {_num(c['ci_high'])}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fit(c: dict) -> str:
    if c["kind"] != "exponent":
        return "–"
    text = f"{c['n_sizes']} sizes, {c['decades']:.1f} decades, {c['seeds']} seeds"
    return text if c["fit_rule_met"] else f"**below the fit rule**: {text}"


def results_page(paper_dir: Path = PAPER) -> str:
    sys.path.insert(0, str(ROOT))
    from learnthy_nb.core import claim_at_edge
    lines = [
        "# Results",
        "",
        "Every headline claim of the book in one table: what the theorem predicts, what the chapter measured at",
        "book scale (the outputs stored in the notebooks), the baselines measured beside it, and the verdict.",
        "This page is generated when the book is built, from the claims the chapters record with `record_claim`",
        "({ref}`core-claims`); nothing in it is typed by hand. The verdict follows one rule,",
        "{prf:ref}`def-claim-verdict`: a claim is *reproduced* when the measured interval lies within the",
        "claim's tolerance of the prediction (or on the predicted side of a bound). A fitted exponent must come",
        "from at least five sizes over at least a decade with three seeds per size; fits that do not meet this",
        "rule are flagged. Each claim links to the section that discusses it, including why a claim was not",
        "reproduced. The paper-scale column shows `make paper` runs (on a GPU, into `paper/`) when present.",
        "",
    ]
    counts = {"reproduced": 0, "not reproduced": 0}
    for caption, files in toc_parts():
        part = []
        for f in files:
            p = ROOT / f"{f}.ipynb"
            if not f.startswith("nbs/") or not p.exists():
                continue
            nb = read_nb(p)
            paper = {}
            if (paper_dir / p.name).exists():
                paper = {c["key"]: c for c in claims(read_nb(paper_dir / p.name))}
            rows = []
            for c in claims(nb):
                counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
                base = "; ".join(f"{_cell(k)} {_measured(v)}" for k, v in c["baselines"].items()) or "–"
                pc = paper.get(c["key"])
                ptext = f"{_measured(pc)}: {pc['verdict']}" if pc else "not run"
                edge = " (at the edge)" if claim_at_edge(c) else ""
                counts["edge"] = counts.get("edge", 0) + bool(edge)
                rows.append(f"| {_cell(c['statement'])} ({{ref}}`section <{c['section']}>`) | {c['relation']} "
                            f"{_num(c['theory'])} | {_measured(c)} | {base} | {_fit(c)} | **{c['verdict']}**{edge} "
                            f"| {ptext} |")
            if rows:
                title = src(nb["cells"][0]).splitlines()[0].lstrip("# ").strip()
                part += [f"### {title}", "",
                         "| Claim | Theory | Measured [95% CI] | Baselines | Fit | Verdict | Paper scale |",
                         "|---|---|---|---|---|---|---|", *rows, ""]
        if part:
            lines += [f"## {caption}", "", *part]
    lines.insert(2, f"In all: {counts.get('reproduced', 0)} claims reproduced, "
                    f"{counts.get('not reproduced', 0)} not reproduced. {counts.get('edge', 0)} of these verdicts are "
                    "*at the edge* ({ref}`core-claims-edge`): their interval is closer to flipping the verdict than "
                    "half the tolerance a re-execution on another machine may move it by.\n")
    return "\n".join(lines) + "\n"


def makespan(seconds: list[float], jobs: int) -> float:
    """Wall-clock time of running tasks of the given durations `jobs` at a time, longest first, each starting when a
    slot frees (the order of `run`)."""
    slots = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        i = min(range(len(slots)), key=slots.__getitem__)
        slots[i] += s
    return max(slots)


def status_page() -> str:
    lines = ["# Execution status", "",
             "Every chapter is a notebook whose stored outputs are the pages you read. `tools/chapters.py run`",
             "executes it (one OpenMP thread per chapter, chapters in parallel, one per core) and records in the",
             "notebook the time it took, the machine and a fingerprint of its code and of the package modules it",
             "imports; the tests fail if a stored chapter's fingerprint no longer matches its code. This page is",
             "generated from those records when the book is built.", "",
             "Seconds are wall-clock; CPU seconds are the kernel's own CPU time (what the chapter costs on a dedicated",
             "core, whatever else the machine was doing; '–' for chapters executed before it was recorded).", "",
             "| Chapter | Scale | Seconds | CPU seconds | Executed | Outputs current | Machine |",
             "|---|---|---|---|---|---|---|"]
    total = 0.0
    stale_set = {p for p, _ in stale(chapters())}
    for p in chapters():
        meta = read_nb(p).get("metadata", {}).get("learnthy", {})
        total += meta.get("cpu_seconds", meta.get("seconds", 0.0))
        lines.append(f"| {{doc}}`{p.stem} <../nbs/{p.stem}>` | {meta.get('scale', '–')} | {meta.get('seconds', '–')} "
                     f"| {meta.get('cpu_seconds', '–')} | {meta.get('executed', '–')} | {'no' if p in stale_set else 'yes'} | {_cell(meta.get('machine', '–'))} |")
    lines += ["", f"Sum over the chapters: {total / 60:.1f} CPU-minutes (one thread each; the kernel's CPU time where it "
                  "was recorded, else the wall-clock time)."]
    walls = [read_nb(p).get("metadata", {}).get("learnthy", {}).get("seconds") for p in chapters()]
    if walls and all(isinstance(w, (int, float)) for w in walls):
        lines += ["", f"Scheduled as `make book` runs them (two at a time, longest first), the stored wall-clock times give "
                      f"a whole-book run of {makespan(walls, 2) / 60:.1f} minutes on two cores (each chapter's time as it "
                      "ran beside another; the Flower chapters' wall time includes their server and client processes)."]
    if PAPER.exists():
        lines += ["", "## Paper scale", "", "| Chapter | Seconds | Executed | Machine |", "|---|---|---|---|"]
        for p in sorted(PAPER.glob("*.ipynb")):
            meta = read_nb(p).get("metadata", {}).get("learnthy", {})
            lines.append(f"| {p.stem} | {meta.get('seconds', '–')} | {meta.get('executed', '–')} | {_cell(meta.get('machine', '–'))} |")
    return "\n".join(lines) + "\n"


def pages() -> None:
    (ROOT / "book" / "results.md").write_text(results_page())
    (ROOT / "book" / "status.md").write_text(status_page())
    print("wrote book/results.md and book/status.md")


# ------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_exec":
        _execute_one(argv[1], argv[2], argv[3], int(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("chapters", nargs="*")
    r.add_argument("--scale", default="book", choices=["quick", "book", "paper"])
    r.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    r.add_argument("--waiting-jobs", type=int, default=0,
                   help="extra slots for chapters whose stored run mostly waited (kernel CPU time < half the wall "
                        "time); off by default, see `run`")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--inplace", action="store_true")
    g.add_argument("--out", type=Path)
    r.add_argument("--stale", action="store_true", help="only chapters whose stored outputs are stale")
    r.add_argument("--wall", type=int, default=None, help="wall-clock limit per chapter, seconds")
    r.add_argument("--timeout", type=int, default=1800, help="limit per cell, seconds")
    s = sub.add_parser("stale")
    s.add_argument("chapters", nargs="*")
    c = sub.add_parser("compare")
    c.add_argument("new_dir", type=Path)
    c.add_argument("chapters", nargs="*")
    gl = sub.add_parser("gluecheck")
    gl.add_argument("run_dir", type=Path)
    gl.add_argument("chapters", nargs="*")
    sub.add_parser("pages")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        paths = chapters(a.chapters)
        if a.stale:
            paths = [p for p, _ in stale(paths, a.scale)]
            if not paths:
                print("every chapter's stored outputs are current: nothing to execute")
                return 0
        return run(paths, a.scale, a.jobs, a.out, a.wall, a.timeout, a.waiting_jobs)
    if a.cmd == "stale":
        found = stale(chapters(a.chapters))
        for p, why in found:
            print(f"{p.stem}: {why}")
        print(f"{len(found)} stale chapter(s)" + (": run `make nbs CHAPTERS=\"...\"` and commit" if found else ""))
        return 1 if found else 0
    if a.cmd == "compare":
        return compare(chapters(a.chapters), a.new_dir)
    if a.cmd == "gluecheck":
        return gluecheck(chapters(a.chapters), a.run_dir)
    if a.cmd == "pages":
        pages()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
