"""Conventions every chapter keeps (CONTRIBUTING.md, "A chapter"), checked on the notebooks in nbs/."""
import json
import re
from pathlib import Path

import sys

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "nbs").glob("*.ipynb"))
GENERATED = {"book/results", "book/status"}        # written by `tools/chapters.py pages` at build time
sys.path.insert(0, str(ROOT / "tools"))
import chapters as book_tools  # noqa: E402

from learnthy_nb.core import claim_verdict  # noqa: E402


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _src(cell):
    return "".join(cell["source"])


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        stack = list(part.get("chapters", []))
        while stack:
            entry = stack.pop()
            files.append(entry["file"])
            stack.extend(entry.get("sections", []))
    return files


def test_there_are_chapters():
    assert CHAPTERS, "nbs/ holds no notebooks"


def test_every_chapter_is_in_the_toc_and_every_toc_entry_exists():
    files = _toc_files()
    for path in CHAPTERS:
        assert f"nbs/{path.stem}" in files, f"{path.name} is not in _toc.yml"
    for entry in files:
        assert entry in GENERATED or any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_conventions(path):
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown" and _src(cells[0]).startswith("# "), "first cell: an H1 title"
    code = [c for c in cells if c["cell_type"] == "code"]
    colab = code[0]
    assert "google.colab" in _src(colab) and "remove-cell" in _tags(colab), "first code cell: the Colab install cell"
    exp = [c for c in code if re.match(r"#\|\s*default_exp\s+\w+", _src(c))]
    assert len(exp) == 1 and "remove-cell" in _tags(exp[0]), "one `#| default_exp` cell, tagged remove-cell"
    assert any(re.search(r"\brecord_(claim|engine_claims)\(", _src(c)) for c in code), \
        "the chapter records its headline claims (record_claim, or record_engine_claims for the Flower engines)"
    assert "machine_info()" in _src(code[-1]) and "remove-input" in _tags(code[-1]), "last cell prints machine_info()"
    # Stored outputs are book-scale results: every code cell was executed (nbdev_clean would null these).
    assert all(c.get("execution_count") is not None for c in code if _src(c).strip() and "remove-cell" not in _tags(c))
    counts = [c["execution_count"] for c in code if c.get("execution_count") is not None]
    assert counts == sorted(counts), "cells were executed in order, top to bottom"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, "stored outputs contain an error"
    # A page shows what a cell prints, not the repr of its last expression beside it (assign `_ = ...`).
    bare = [c.get("id") for c in code if "remove-output" not in _tags(c) and "remove-cell" not in _tags(c)
            and any(o.get("output_type") == "execute_result" for o in c.get("outputs", []))]
    assert not bare, f"cells {bare} show a bare value (Out[..]); end them with `_ = ...` or tag them remove-output"
    # {glue:text} inserts plain text: TeX in a glued string would show as raw `$...$` on the page
    tex = [(c.get("id"), o["metadata"]["scrapbook"]["name"]) for c in code for o in c.get("outputs", [])
           if (o.get("metadata") or {}).get("scrapbook") and "$" in str(o.get("data", {}).get(
               "application/papermill.record/text/plain", ""))]
    assert not tex, f"glued strings with TeX (write them in plain text/Unicode, keep the math in the prose): {tex}"
    text = "\n".join(_src(c) for c in cells if c["cell_type"] == "markdown")
    assert "{prf:" in text or path.stem == "00_core", "the result is stated as a prf directive"
    assert "{exercise}" in text and "{solution}" in text, "exercises with solutions"
    assert "{bibliography}" not in text, "one bibliography for the book (book/references.md): cite, do not repeat it"


def test_cited_keys_exist():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    sources = [p.read_text() for p in CHAPTERS] + [p.read_text() for p in (ROOT / "book").glob("*.md")]
    cited = {k.strip() for s in sources for group in re.findall(r"\{cite:?\w*\}`([^`]+)`", s) for k in group.split(",")}
    assert cited and cited <= keys, sorted(cited - keys)


# ---------------------------------------------------------------------------------- stored outputs are current
@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_stored_outputs_are_current(path):
    """The stored book-scale outputs were produced by the chapter's current code and package modules."""
    found = book_tools.stale([path])
    assert not found, f"{found[0][1]}: re-execute it with `make nbs CHAPTERS={path.stem}` and commit"


def test_fingerprint_sees_code_and_package_changes(tmp_path):
    nb = json.loads((ROOT / "nbs" / "11_diffusion_beyond.ipynb").read_text())
    base = book_tools.fingerprint(nb, "book")
    assert "diffusion" in book_tools.package_deps(nb) and "core" in book_tools.package_deps(nb)
    assert book_tools.fingerprint(nb, "quick") != base                     # the scale is part of it
    code = next(c for c in nb["cells"] if c["cell_type"] == "code" and "export" not in _src(c))
    code["source"] = _src(code) + "\nx = 1"
    assert book_tools.fingerprint(nb, "book") != base                      # a code cell changed
    nb2 = json.loads((ROOT / "nbs" / "11_diffusion_beyond.ipynb").read_text())
    md = next(c for c in nb2["cells"] if c["cell_type"] == "markdown")
    md["source"] = _src(md) + " more prose"
    assert book_tools.fingerprint(nb2, "book") == base                     # prose does not need re-execution
    # a docstring or comment of an imported module does not count; its code does
    digest = book_tools._module_digest("core")
    src = (ROOT / "learnthy_nb" / "core.py").read_text()
    mod = tmp_path / "core.py"
    mod.write_text(src.replace('"""The experiment scale', '"""Another docstring. The experiment scale'))
    old, book_tools.PKG = book_tools.PKG, tmp_path
    try:
        assert book_tools._module_digest("core") == digest
        mod.write_text(src.replace('SCALES = ("quick", "book", "paper")', 'SCALES = ("quick", "book", "paper", "x")'))
        assert book_tools._module_digest("core") != digest
    finally:
        book_tools.PKG = old


def test_in_place_execution_keeps_prose_edited_meanwhile_and_refuses_changed_code():
    nb = json.loads((ROOT / "nbs" / "00_core.ipynb").read_text())
    executed = json.loads(json.dumps(nb))
    executed["metadata"]["learnthy"] = {"fingerprint": "new"}
    code = next(c for c in executed["cells"] if c["cell_type"] == "code" and c.get("outputs"))
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["new output\n"]}]
    current = json.loads(json.dumps(nb))
    md = next(c for c in current["cells"] if c["cell_type"] == "markdown")
    md["source"] = _src(md) + " edited while executing"
    current["cells"].insert(1, {"cell_type": "markdown", "id": "added", "metadata": {}, "source": ["A new paragraph."]})
    merged = book_tools.merge_outputs(current, executed)
    assert merged["metadata"]["learnthy"] == {"fingerprint": "new"}
    assert [c.get("id") for c in merged["cells"]] == [c.get("id") for c in current["cells"]]
    assert any(_src(c).endswith("edited while executing") for c in merged["cells"])
    assert any(c.get("outputs") == code["outputs"] for c in merged["cells"] if c["cell_type"] == "code")
    changed = json.loads(json.dumps(current))
    next(c for c in changed["cells"] if c["cell_type"] == "code")["source"] = ["x = 2"]
    assert book_tools.merge_outputs(changed, executed) is None


def test_makespan_is_the_schedule_of_run():
    """The status page's whole-book estimate: durations run `jobs` at a time, longest first, each in the first free slot."""
    assert book_tools.makespan([3, 3, 2, 2, 2], 2) == 7          # 3 + 2 + 2 beside 3 + 2, as run orders them (not 6)
    assert book_tools.makespan([5, 1, 1, 1], 2) == 5
    assert book_tools.makespan([4, 4], 1) == 8 and book_tools.makespan([], 2) == 0
    page = book_tools.status_page()
    assert "whole-book run of" in page and "minutes on two cores" in page


# --------------------------------------------------------------------------------------------- recorded claims
def _claims(path):
    return book_tools.claims(json.loads(path.read_text()))


def _labels(path):
    text = "\n".join(_src(c) for c in _cells(path) if c["cell_type"] == "markdown")
    return set(re.findall(r"^\((\S+)\)=\s*$", text, flags=re.M)) | set(re.findall(r":label:\s*(\S+)", text))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_claims_are_recorded_and_consistent(path):
    """Each chapter records >= 1 headline claim at book scale; each verdict follows from its numbers by the
    book's rule; the fit rule is computed; every claim links to a section of its chapter."""
    found = _claims(path)
    assert found, "no recorded claim in the stored outputs"
    labels = _labels(path)
    for c in found:
        assert c["scale"] == "book", (c["key"], c["scale"])
        assert c["verdict"] == claim_verdict(c["theory"], c["relation"], c["tolerance"], c["measured"],
                                             c["ci_low"], c["ci_high"]), c["key"]
        if c["kind"] == "exponent":
            rule = c["n_sizes"] >= 5 and c["decades"] >= 1 - 1e-9 and c["seeds"] >= 3
            assert c["fit_rule_met"] == rule, c["key"]
        else:
            assert c["fit_rule_met"] is None, c["key"]
        assert c["section"] in labels, f"{c['key']}: section label {c['section']!r} is not in the chapter"
        assert c["reproduce_tol"] > 0, c["key"]


def test_claim_keys_are_unique():
    keys = [c["key"] for p in CHAPTERS for c in _claims(p)]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_results_page_lists_every_claim_with_its_verdict():
    page = book_tools.results_page()
    rows = [line for line in page.splitlines() if "(" + "{ref}`section <" in line]
    for p in CHAPTERS:
        for c in _claims(p):
            row = [r for r in rows if r.startswith(f"| {book_tools._cell(c['statement'])} ({{ref}}`section <{c['section']}>`) |")]
            assert len(row) >= 1, f"{c['key']} is missing from the results page"
            assert f"**{c['verdict']}**" in row[0], c["key"]
            if c["kind"] == "exponent" and not c["fit_rule_met"]:
                assert "below the fit rule" in row[0], c["key"]
    total = sum(len(_claims(p)) for p in CHAPTERS)
    assert len(rows) == total


def test_results_page_paper_column(tmp_path):
    """A paper-scale run's claims appear as their own column; without one the column says 'not run'."""
    assert "not run" in book_tools.results_page(paper_dir=tmp_path)
    nb = json.loads((ROOT / "nbs" / "00_core.ipynb").read_text())
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            claim = o.get("data", {}).get(book_tools.CLAIM_MIME)
            if claim:
                claim.update(measured=-0.4321, ci_low=-0.44, ci_high=-0.42, verdict="not reproduced")
    (tmp_path / "00_core.ipynb").write_text(json.dumps(nb))
    page = book_tools.results_page(paper_dir=tmp_path)
    assert "−0.432 [−0.44, −0.42]: not reproduced" in page


def test_refs_to_headings_with_math_give_their_own_text():
    """A `{ref}` without explicit text renders the target heading as plain text, so math in that heading would
    show as raw TeX: such references must give their own text ({ref}`text <label>`)."""
    headings = {}
    for path in CHAPTERS:
        lines = "\n".join(_src(c) for c in _cells(path) if c["cell_type"] == "markdown").splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^\((\S+)\)=\s*$", line)
            if m:
                nxt = next((ln for ln in lines[i + 1:] if ln.strip()), "")
                if nxt.startswith("#"):
                    headings[m.group(1)] = nxt
    bad = []
    for path in CHAPTERS + sorted((ROOT / "book").glob("*.md")):
        for label in re.findall(r"\{ref\}`([^`<]+)`", path.read_text()):
            if "$" in headings.get(label.strip(), ""):
                bad.append((path.name, label, headings[label.strip()]))
    assert not bad, bad
