"""Checks of the rendered book in a real browser (headless Chromium).

Run after the book is built (`make test` builds it first): `pytest -m site tests/`.
"""
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "book" / "_build" / "html"
CHAPTER = HTML / "nbs" / "00_core.html"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=20000"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("headless Chromium is needed (Debian package 'chromium'; `make test` installs it)")


@pytest.fixture(scope="module")
def built():
    if not CHAPTER.exists():
        pytest.fail(f"{CHAPTER} does not exist: build the book first (make test / make book)")
    return CHAPTER


@pytest.fixture(scope="module")
def dom(built, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    out = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", built.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_math_is_typeset_by_local_mathjax(built, dom):
    source = built.read_text()
    scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', source, flags=re.I)
    assert scripts and all(not s.startswith(("http:", "https:", "//")) for s in scripts), scripts
    assert (built.parent / scripts[0].split("?")[0]).resolve().exists()
    # MathJax 3 replaces every TeX span by an <mjx-container>; errors would be <mjx-merror> elements.
    assert dom.count("<mjx-container") >= 30
    assert "<mjx-merror" not in dom
    assert r"\(" not in re.sub(r"<(script|pre|style)\b.*?</\1>", "", dom, flags=re.S)  # no raw TeX left


def test_figures_and_glued_numbers_render(built, dom):
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
    figures = [src for src in images if "_images/" in src]
    assert figures, images
    for src in figures:
        assert (built.parent / src).resolve().stat().st_size > 10_000
    glued = re.findall(r'class="pasted-text">([^<]+)<', dom)
    assert len(glued) >= 10 and all(re.fullmatch(r"-?\d+(\.\d+)?|(does not )?contain(s)?", g) for g in glued), glued


def _visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style|pre|code|mjx-container)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"<[^>]+>", " ", dom)


def _chapters():
    return sorted(p for p in (HTML / "nbs").glob("*.html"))


def test_no_raw_tex_on_any_chapter(built, tmp_path_factory):
    """Every chapter's math is typeset: no `$$`, `\\frac`, ... left as text, no MathJax error."""
    profile = tmp_path_factory.mktemp("chromium-profile-all")
    for page in _chapters():
        out = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "<mjx-container" in out.stdout, page.name
        assert "<mjx-merror" not in out.stdout, page.name
        text = _visible_text(out.stdout)
        leftovers = re.findall(r"\$\$|\\(?:frac|mathbb|mathrm|sum|int|left|right|begin)\b", text)
        assert not leftovers, (page.name, leftovers[:5], text[max(0, text.find(leftovers[0]) - 200):][:400])


def test_colab_launch_link(built):
    source = built.read_text()
    assert "https://colab.research.google.com/github/learnthy/learnthy/blob/main/nbs/00_core.ipynb" in source


def test_screenshot_is_not_blank(built, tmp_path):
    shot = tmp_path / "chapter.png"
    out = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,3000",
                          f"--screenshot={shot}", built.as_uri()], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] == 3000 and pixels.shape[1] == 1280
    assert pixels[..., :3].std() > 0.05  # text, math and figures, not an empty page


def test_every_toc_page_is_built():
    for page in ["book/intro", "book/notation", "nbs/00_core", "book/results", "book/status", "book/references"]:
        assert (HTML / f"{page}.html").exists(), page
    bibliography = (HTML / "book" / "references.html").read_text().lower()
    for title in ["diffusion models are minimax optimal distribution estimators",
                  "approximation and estimation ability of transformers",
                  "uniform-in-time propagation of chaos", "time and space discretization",
                  "classifying sparse parities and beyond", "differential private optimization via gradient differences",
                  "different input image sizes", "gradient-based feature learning under structured data",
                  "spiked random matrix perspective", "feature learning for out-of-distribution generalization"]:
        assert title in bibliography, title


def test_results_page_renders_every_claim_with_links(tmp_path):
    """The generated results table renders: one row per recorded claim, a verdict in each, every claim's
    link resolving to an anchor of its chapter page, and its math typeset."""
    import json
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    import chapters as book_tools
    page = HTML / "book" / "results.html"
    assert page.exists()
    out = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    n_claims = sum(len(book_tools.claims(json.loads(p.read_text()))) for p in (ROOT / "nbs").glob("*.ipynb"))
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", dom, flags=re.S)
    body = [r for r in rows if "<td" in r]
    assert len(body) == n_claims > 0
    for row in body:
        assert re.search(r"<strong>(not )?reproduced</strong>", row), row[:300]
        href = re.search(r'<a class="reference internal" href="([^"#]+)#([^"]+)"', row)
        assert href, row[:300]
        target = (page.parent / href.group(1)).resolve()
        assert target.exists() and f'id="{href.group(2)}"' in target.read_text(), href.groups()
    assert "<mjx-merror" not in dom
    text = _visible_text(dom)
    leftovers = re.findall(r"\$|\\(?:frac|mathbb|mathrm|sum|int|left|right|begin)\b", text)
    assert not leftovers, (leftovers[:5], text[max(0, text.find(leftovers[0]) - 200):][:400])
