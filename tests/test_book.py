"""Conventions every chapter keeps (DESIGN.md, "A chapter"), checked on the notebooks in nbs/."""
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "nbs").glob("*.ipynb"))


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
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_conventions(path):
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown" and _src(cells[0]).startswith("# "), "first cell: an H1 title"
    code = [c for c in cells if c["cell_type"] == "code"]
    colab = code[0]
    assert "google.colab" in _src(colab) and "remove-cell" in _tags(colab), "first code cell: the Colab install cell"
    exp = [c for c in code if re.match(r"#\|\s*default_exp\s+\w+", _src(c))]
    assert len(exp) == 1 and "remove-cell" in _tags(exp[0]), "one `#| default_exp` cell, tagged remove-cell"
    assert any(_src(c).startswith("# NBVAL_CHECK_OUTPUT") for c in code), "a `# NBVAL_CHECK_OUTPUT` cell"
    assert "machine_info()" in _src(code[-1]) and "remove-input" in _tags(code[-1]), "last cell prints machine_info()"
    # Stored outputs are book-scale results: every code cell was executed (nbdev_clean would null these).
    assert all(c.get("execution_count") is not None for c in code if _src(c).strip() and "remove-cell" not in _tags(c))
    counts = [c["execution_count"] for c in code if c.get("execution_count") is not None]
    assert counts == sorted(counts), "cells were executed in order, top to bottom"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, "stored outputs contain an error"
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
