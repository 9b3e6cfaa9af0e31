"""Checks of the rendered book in a real browser (headless Chromium).

Run after the book is built (`make test` builds it first): `pytest -m site tests/`.
"""
import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib.image as mpimg
import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "book" / "_build" / "html"
CHAPTER = HTML / "nbs" / "00_core.html"
BASE_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FLAGS = [*BASE_FLAGS, "--virtual-time-budget=20000"]       # a one-shot run (the screenshot): wait for the scripts


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
def dom(built, rendered):
    """The toolkit chapter's DOM after its scripts ran (one browser dump, shared with the every-page checks)."""
    return rendered[built]


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


def _pages():
    """Every page of the book: the chapters and the pages of book/ (intro, notation, results, ...)."""
    return _chapters() + sorted(p for p in (HTML / "book").glob("*.html"))


class _Browser:
    """One headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: it reads
    NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4). One browser for all pages: a
    Chromium start per page (about a second of CPU each, 30 pages) was a third of the browser test's time."""

    def __init__(self, profile: Path, log: Path):
        import fcntl
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        # high descriptors, so that moving them to 3 and 4 in the child cannot overwrite one with the other
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (to_browser, from_browser)]
        os.close(to_browser), os.close(from_browser)

        def descriptors():                 # in the child, before exec: its fd 3 and 4 (dup2 clears close-on-exec)
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self._log = open(log, "w")
        self.proc = subprocess.Popen([_chromium(), *BASE_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                      "about:blank"], stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     preexec_fn=descriptors, close_fds=False)
        for fd in high:
            os.close(fd)
        self._buffer, self._next_id, self._messages = b"", 0, []

    def send(self, method: str, session: str = None, **params) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict:
        import select
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time (its log: " + self._log.name + ")")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe (its log: " + self._log.name + ")")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def wait(self, match, timeout: float = 120) -> dict:
        """The first message (a reply or an event) for which match(message) is true; earlier others are kept."""
        for i, message in enumerate(self._messages):
            if match(message):
                return self._messages.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if match(message):
                return message
            self._messages.append(message)

    def reply(self, call_id: int, timeout: float = 120) -> dict:
        message = self.wait(lambda m: m.get("id") == call_id, timeout)
        if "error" in message:
            raise RuntimeError(f"DevTools error: {message['error']}")
        return message["result"]

    def close(self):
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
        os.close(self._write), os.close(self._read)
        self._log.close()


# The page's DOM once it has loaded and MathJax has typeset it (MathJax 3: startup.promise resolves then).
_TYPESET_DOM = """new Promise(done => {
  const typeset = () => ((window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve())
      .then(() => done(document.documentElement.outerHTML));
  if (document.readyState === "complete") typeset(); else window.addEventListener("load", typeset);
})"""


@pytest.fixture(scope="module")
def rendered(built, tmp_path_factory):
    """Each page's DOM after the browser ran its scripts (MathJax), dumped once for all the checks below: one
    Chromium, a tab per page, as many tabs at a time as cores (each tab renders in its own process)."""
    root = tmp_path_factory.mktemp("chromium")
    browser = _Browser(root / "profile", root / "chromium.log")
    doms, pages, at_once = {}, _pages(), os.cpu_count() or 1
    try:
        for start in range(0, len(pages), at_once):
            batch, tabs = pages[start:start + at_once], []
            for page in batch:
                target = browser.reply(browser.send("Target.createTarget", url="about:blank"))["targetId"]
                session = browser.reply(browser.send("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
                browser.reply(browser.send("Page.enable", session))
                browser.reply(browser.send("Page.navigate", session, url=page.as_uri()))
                tabs.append((page, target, session))
            calls = []
            for page, target, session in tabs:
                browser.wait(lambda m, s=session: m.get("sessionId") == s and m.get("method") == "Page.loadEventFired")
                calls.append(browser.send("Runtime.evaluate", session, expression=_TYPESET_DOM, awaitPromise=True,
                                          returnByValue=True))
            for (page, target, session), call in zip(tabs, calls):
                result = browser.reply(call)
                assert "exceptionDetails" not in result, (page.name, result["exceptionDetails"])
                doms[page] = result["result"]["value"]
                browser.reply(browser.send("Target.closeTarget", targetId=target))
    finally:
        browser.close()
    return doms


def test_no_raw_tex_on_any_chapter(rendered):
    """Every chapter's math is typeset: no `$$`, `\\frac`, ... left as text, no MathJax error."""
    for page, dom in rendered.items():
        if page.parent.name != "nbs":
            continue
        assert "<mjx-container" in dom, page.name
        assert "<mjx-merror" not in dom, page.name
        text = _visible_text(dom)
        leftovers = re.findall(r"\$\$|\\(?:frac|mathbb|mathrm|sum|int|left|right|begin)\b", text)
        # inline math that was never typeset, e.g. TeX inside a glued string (glue:text inserts plain text)
        leftovers += re.findall(r"\$[^$\s][^$\n]{0,80}\$", text)
        assert not leftovers, (page.name, leftovers[:5], text[max(0, text.find(leftovers[0]) - 200):][:400])


def test_no_undefined_tex_macro_on_any_page(rendered):
    """MathJax typesets an undefined macro (e.g. `\\kappaw` written for `\\kappa w`) in red instead of failing."""
    for page, dom in rendered.items():
        red = [m.start() for m in re.finditer(r'<mjx-[a-z]+[^>]*style="[^"]*color: red', dom)]
        assert not red, (page.name, "undefined TeX macro(s) typeset in red", _visible_text(dom[red[0] - 300:red[0] + 300]))


# MyST markup that did not become what it names: a directive (```{prf:theorem} ... with :label:) that
# the parser left as text or as a code box, a role ({cite:t}`key`, {glue:text}`name`, {numref}`label`)
# printed literally, e.g. because it sits inside a directive's title or inside $...$ math.
RAW_MARKUP = re.compile(r"```\{|\{prf:|:label:|\{cite|\{glue|\{numref|\{doc\}|\{ref\}`|\{eq\}`"
                        r"|\{[A-Za-z][\w-]*(?::[\w-]+)?\}`")
# TeX that nothing typesets: a dollar sign, \( or \[, a control word such as \mathbb, or (in a title, link
# text or caption, where a {doc} or {ref} reference prints the target's math as its bare source) a sub- or
# superscript such as W_1 or n^{-1/2}.
RAW_TEX = re.compile(r"\$|\\[(\[]|\\[A-Za-z]+|(?<![\w\\])[A-Za-z]_\{?\w|\^\{?[-\w]")


def _unescape(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def _reader_text(dom: str) -> str:
    """What a reader sees as text: no scripts, no typeset math, no chapter code (code cells may quote markup)."""
    dom = re.sub(r"<(script|style|mjx-container)\b.*?</\1>", " ", dom, flags=re.S)
    dom = re.sub(r'<div class="highlight-ipython3[^"]*">.*?</pre>', " ", dom, flags=re.S)
    return _unescape(dom)


def _excerpt(text: str, match: re.Match) -> str:
    return " ".join(text[max(0, match.start() - 150):match.end() + 150].split())


def test_no_raw_directive_or_role_text_on_any_page(rendered):
    """No page shows MyST markup as text, in its prose, in a code box or inside math (whose TeX source is
    read from the built HTML, since typeset math hides it)."""
    problems = []
    for page, dom in rendered.items():
        text = _reader_text(dom)
        problems += [(page.name, _excerpt(text, m)) for m in RAW_MARKUP.finditer(text)]
        source = page.read_text()
        for math in re.findall(r'<(span|div) class="math[^"]*">(.*?)</\1>', source, flags=re.S):
            found = RAW_MARKUP.search(html.unescape(math[1]))
            if found:
                problems.append((page.name, "in math: " + " ".join(html.unescape(math[1]).split())[:300]))
    assert not problems, problems[:10]


def test_titles_links_and_captions_have_no_raw_tex(rendered):
    """A page title (the browser tab, the sidebar, the previous/next links) cannot typeset math, so the
    chapters' H1 titles carry none; link texts and figure captions show no untypeset TeX."""
    problems = []
    for page, dom in rendered.items():
        title = re.search(r"<title>(.*?)</title>", dom, flags=re.S)
        assert title, page.name
        if RAW_TEX.search(html.unescape(title.group(1))):
            problems.append((page.name, "title", html.unescape(title.group(1))))
        for h1 in re.findall(r"<h1\b.*?</h1>", page.read_text(), flags=re.S):  # the page header repeats it as text
            if 'class="math' in h1 or RAW_TEX.search(_unescape(h1)):
                problems.append((page.name, "h1", " ".join(_unescape(h1).split())))
        body = re.sub(r"<(script|style|mjx-container)\b.*?</\1>", " ", dom, flags=re.S)
        for kind, pattern in [("link", r"<a\b[^>]*>(.*?)</a>"), ("caption", r"<figcaption\b[^>]*>(.*?)</figcaption>")]:
            for fragment in re.findall(pattern, body, flags=re.S):
                if kind == "link" and "<code" in fragment:
                    continue  # a link to an API name (fit_power_law) is code, not prose
                text = _unescape(fragment)
                if RAW_TEX.search(text) or RAW_MARKUP.search(text):
                    problems.append((page.name, kind, " ".join(text.split())[:200]))
    assert not problems, problems[:10]


def test_no_empty_table_on_any_page(rendered):
    """Every table has at least one body cell with text (an empty results table is a failed build step)."""
    problems = []
    for page, dom in rendered.items():
        for table in re.findall(r"<table\b.*?</table>", dom, flags=re.S):
            cells = re.findall(r"<td\b[^>]*>(.*?)</td>", table, flags=re.S)
            if not any(_unescape(c).strip() or "<mjx-container" in c or "<img" in c for c in cells):
                problems.append((page.name, " ".join(_unescape(table).split())[:200]))
    assert not problems, problems


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


def test_results_page_renders_every_claim_with_links(rendered):
    """The generated results table renders: one row per recorded claim, a verdict in each, every claim's
    link resolving to an anchor of its chapter page, and its math typeset."""
    import json
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    import chapters as book_tools
    page = HTML / "book" / "results.html"
    assert page.exists() and page in rendered
    dom = rendered[page]
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


def test_every_chapter_is_numbered_and_every_figure_captioned(built):
    """Each chapter page's title carries its number; every image of a chapter (its figures) sits in a numbered,
    captioned figure: no bare plot output."""
    for page in _chapters():
        source = page.read_text()
        titles = re.findall(r"<h1[^>]*>(.*?)</h1>", source, flags=re.S)
        assert any('class="section-number"' in t for t in titles), (page.name, "chapter title without a number")
        figures = re.findall(r"<figure\b.*?</figure>", source, flags=re.S)
        for fig in figures:
            if "<img" in fig:
                assert "<figcaption" in fig and "caption-number" in fig, (page.name, "figure without a numbered caption")
        outside = re.sub(r"<figure\b.*?</figure>", " ", source, flags=re.S)
        bare = re.findall(r'<img[^>]+src="[^"]*_images/[^"]*"', outside)
        assert not bare, (page.name, "images outside a captioned figure", bare[:3])
