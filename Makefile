# learnthy: two commands on a fresh machine.
#   make book   set up .venv, execute every chapter at book scale, render the site to book/_build/html
#   make test   set up .venv if missing, then every check (export in sync, unit tests, notebook outputs,
#               site build with -W, browser test)
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# On this kind of machine torch==2.13.0 is a local CPU wheel; an unpinned torch would pull a multi-GB
# CUDA build. Override with e.g. `make test TORCH=torch` elsewhere.
TORCH  ?= torch==2.13.0
JOBS   ?= 2
JB_ARGS := . --toc _toc.yml --path-output book -W -n --keep-going
STORED_CONFIG := book/_build/_config_stored_outputs.yml
# One OpenMP thread per process: the checks run two pytest-xdist workers (or two notebooks) on two cores,
# where oversubscribed OpenMP threads spin and slow small torch kernels by orders of magnitude; one
# thread also gives the stored outputs (`make nbs`) and their check (`make nbval`) the same reduction order.
export OMP_NUM_THREADS ?= 1
PIPQUIET := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: help venv book test export-check unit nbval site site-test nbs clean mathjax

help:
	@echo "make book   - set up, execute the chapters at book scale, render the site (book/_build/html)"
	@echo "make test   - set up if needed, run every check"
	@echo "make nbs    - re-execute every chapter in place (refreshes the outputs stored in nbs/)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)" 2>&1 | { $(PIPQUIET); }
	$(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | { $(PIPQUIET); }
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	LEARNTHY_QUIET=1 $(BIN)/jupyter-book build $(JB_ARGS) --config book/_config.yml
	@echo "The site is in book/_build/html (open book/_build/html/index.html)."

test: $(STAMP) export-check unit nbval site site-test
	@echo "make test: all checks passed."

# 1. The package is exactly what nbdev_export makes from the notebooks.
export-check: $(STAMP)
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- learnthy_nb)" ]; then \
	  git status --porcelain -- learnthy_nb; \
	  echo "learnthy_nb/ is out of sync with nbs/: run .venv/bin/nbdev_export and commit."; exit 1; fi
	@echo "export-check: learnthy_nb/ is in sync with the notebooks."

# 2. Unit and property tests of the package.
unit: $(STAMP)
	$(BIN)/pytest -q -n $(JOBS) -m "not site" tests

# 3. Every notebook runs; cells marked NBVAL_CHECK_OUTPUT reproduce their stored output.
nbval: $(STAMP)
	LEARNTHY_QUIET=1 $(BIN)/pytest -q -n $(JOBS) --dist loadfile --nbval-lax -p no:cacheprovider nbs/

# 4. The site, from the outputs stored in the notebooks (no execution), warnings are errors.
site: $(STAMP)
	mkdir -p book/_build
	sed 's/^\(  *execute_notebooks:\).*/\1 "off"/' book/_config.yml > $(STORED_CONFIG)
	$(BIN)/jupyter-book build $(JB_ARGS) --config $(STORED_CONFIG)

# 5. A real browser renders a chapter: typeset math, figures, glued numbers, Colab link.
site-test: $(STAMP)
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/pytest -q -m site -p no:cacheprovider tests

# Re-execute the chapters in place at book scale (what a developer runs after changing a chapter).
nbs: $(STAMP)
	for nb in nbs/*.ipynb; do echo "executing $$nb"; LEARNTHY_QUIET=1 $(BIN)/jupyter execute --inplace "$$nb"; done
	$(BIN)/nbdev_export

# Re-vendor MathJax 3 from the npm registry (the site must render math with no CDN).
mathjax:
	rm -rf /tmp/learnthy-mathjax && mkdir -p /tmp/learnthy-mathjax
	cd /tmp/learnthy-mathjax && npm pack -q mathjax@3 && tar xzf mathjax-*.tgz
	cp /tmp/learnthy-mathjax/package/es5/tex-chtml-full.js book/_static/mathjax/
	rm -rf book/_static/mathjax/output && mkdir -p book/_static/mathjax/output/chtml/fonts
	cp -r /tmp/learnthy-mathjax/package/es5/output/chtml/fonts/woff-v2 book/_static/mathjax/output/chtml/fonts/

clean:
	rm -rf book/_build .pytest_cache
