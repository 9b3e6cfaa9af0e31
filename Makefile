# learnthy: two commands on a fresh machine.
#   make book   set up .venv, execute the chapters whose stored outputs are stale, render book/_build/html
#   make test   set up .venv if missing, then every check (export in sync, unit tests with stored outputs
#               current and claims consistent, every chapter at quick scale, site build with -W, browser test)
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
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
JB_ARGS := . --toc _toc.yml --path-output book -W -n --keep-going
# One OpenMP thread per process: the checks run two pytest-xdist workers (or two notebooks) on two cores,
# where oversubscribed OpenMP threads spin and slow small torch kernels by orders of magnitude; one
# thread also gives the stored outputs (`make nbs`) and their check (`make reproduce`) the same reduction order.
export OMP_NUM_THREADS ?= 1
PIPQUIET := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: help venv book test browser-start export-check unit flower-e2e quick stale site site-test pages nbs reproduce paper gpu-check install-check clean mathjax

help:
	@echo "make book       - set up, execute the chapters whose stored outputs are stale (parallel), render the site"
	@echo "make test       - set up if needed, run every check"
	@echo "make nbs        - re-execute chapters at book scale in place (CHAPTERS=\"10_diffusion 30_mfld\"; default all)"
	@echo "make reproduce  - re-execute chapters at book scale in a scratch folder; compare with the stored claims"
	@echo "make paper      - execute every chapter at paper scale (a GPU) into paper/"
	@echo "make flower-e2e - the end-to-end Flower tests (simulation and deployment; chapters 43 and 46 also assert them)"
	@echo "make gpu-check  - the CUDA tests (tests/test_cuda*.py) on a GPU, compared with the CPU"

# torch with pip (which finds the machine's local wheel); the rest with uv (a dependency of Flower, so pinned to
# Flower's range): it downloads and byte-compiles in parallel, 17 s instead of pip's 80 s on two cores for the same
# versions. uv keeps the installed torch (it satisfies torch>=2.2) and, like pip here, trusts the system's certificates
# (--native-tls). If uv fails (e.g. no route to PyPI, only to pip's configured mirrors), pip installs the same set.
UV_SPEC := uv>=0.13.5,<0.14
$(STAMP): pyproject.toml
	@echo "venv: setting up .venv [$$(date +%T)]"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)" "$(UV_SPEC)" 2>&1 | { $(PIPQUIET); }
	$(BIN)/uv pip install -q --native-tls --python $(BIN)/python --compile-bytecode -e ".[dev]" \
	  || { echo "venv: uv failed; installing with pip"; $(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | { $(PIPQUIET); }; }
	touch $(STAMP)
	@echo "venv: ready [$$(date +%T)]"

venv: $(STAMP)

# The book: execute what is stale (fingerprint of code and imported package modules changed), one chapter per
# core, then render from the stored outputs. A fresh clone of a green main executes nothing.
book: $(STAMP)
	$(BIN)/python tools/chapters.py run --stale --inplace --jobs $(JOBS)
	$(MAKE) --no-print-directory site
	@echo "The site is in book/_build/html (open book/_build/html/index.html)."

test: browser-start $(STAMP) export-check unit quick site site-test
	@echo "make test: all checks passed. [$$(date +%T)]"

# 1. The package is exactly what nbdev_export makes from the notebooks.
export-check: $(STAMP)
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- learnthy_nb)" ]; then \
	  git status --porcelain -- learnthy_nb; \
	  echo "learnthy_nb/ is out of sync with nbs/: run .venv/bin/nbdev_export and commit."; exit 1; fi
	@echo "export-check: learnthy_nb/ is in sync with the notebooks. [$$(date +%T)]"

# 2. Unit and property tests of the package, the chapters' conventions, stored outputs current (fingerprints)
#    and recorded claims consistent.
#    The end-to-end Flower runs (marker `flower`, ~3 min of process start-up and polling) are not repeated here:
#    the quick stage executes chapters 43 and 46, which assert the same equalities; `make flower-e2e` runs them.
unit: $(STAMP)
	$(BIN)/pytest -q -n $(JOBS) -m "not site and not flower" -p no:cacheprovider tests
	@echo "unit: done [$$(date +%T)]"

flower-e2e: $(STAMP)
	$(BIN)/pytest -q -n $(JOBS) -m flower -p no:cacheprovider tests

# 3. Every chapter runs at quick scale (every cell executes; no output comparison), and its prose finds every
#    glued number it uses.
QUICK_DIR := book/_build/quick
quick: $(STAMP)
	rm -rf $(QUICK_DIR)
	$(BIN)/python tools/chapters.py run --scale quick --out $(QUICK_DIR) --jobs $(JOBS) $(CHAPTERS)
	$(BIN)/python tools/chapters.py gluecheck $(QUICK_DIR) $(CHAPTERS)
	@echo "quick: done [$$(date +%T)]"

stale: $(STAMP)
	$(BIN)/python tools/chapters.py stale

# 4. The site, from the outputs stored in the notebooks (no execution), warnings are errors.
pages: $(STAMP)
	$(BIN)/python tools/chapters.py pages

site: $(STAMP) pages
	$(BIN)/jupyter-book build $(JB_ARGS) --config book/_config.yml
	@echo "site: done [$$(date +%T)]"

# Chromium for step 5, installed in the background (apt, ~1 min on a fresh machine) while steps 1-4 run.
browser-start:
	@tools/browser.sh start

# 5. A real browser renders the pages: typeset math, figures, glued numbers, Colab link, results table.
site-test: $(STAMP)
	tools/browser.sh wait
	$(BIN)/pytest -q -m site -p no:cacheprovider tests

# Re-execute chapters at book scale in place (after changing a chapter), printing how each claim moved.
nbs: $(STAMP)
	$(BIN)/python tools/chapters.py run --inplace --jobs $(JOBS) $(CHAPTERS)
	$(BIN)/nbdev_export

# Does the book reproduce on this machine? Re-execute at book scale into a scratch folder, then compare:
# recorded claims within their stated tolerance with the verdict unchanged; exact-output cells as text.
REPRO_DIR ?= book/_build/reproduce
reproduce: $(STAMP)
	$(BIN)/python tools/chapters.py run --out $(REPRO_DIR) --jobs $(JOBS) $(CHAPTERS)
	$(BIN)/python tools/chapters.py compare $(REPRO_DIR) $(CHAPTERS)

# Paper scale on a GPU, one chapter at a time (at most 10 minutes each), into paper/ (commit its notebooks).
paper: $(STAMP)
	$(BIN)/python tools/chapters.py run --scale paper --out paper --jobs 1 --wall 600 $(CHAPTERS)

# The device contract on a GPU: every test marked `cuda` (tests/test_cuda*.py) runs each module's quick configuration
# on CUDA with a CUDA generator and compares it with the CPU run. Fails (does not skip) on a machine without CUDA.
gpu-check: $(STAMP)
	@$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'make gpu-check needs a CUDA GPU (torch.cuda.is_available() is False)')"
	$(BIN)/pytest -v -m cuda -p no:cacheprovider -rs tests

# A plain `pip install .` (runtime dependencies only, no [dev]) in a fresh venv runs the package's code paths
# (POT, scikit-learn, scipy, matplotlib, tqdm). Not part of `make test`: it downloads and installs a whole venv.
INSTALL_CHECK_VENV ?= /tmp/learnthy-install-check
install-check:
	rm -rf $(INSTALL_CHECK_VENV) && $(PYTHON) -m venv $(INSTALL_CHECK_VENV)
	$(INSTALL_CHECK_VENV)/bin/python -m pip install -q "$(TORCH)" 2>&1 | { $(PIPQUIET); }
	$(INSTALL_CHECK_VENV)/bin/python -m pip install -q . 2>&1 | { $(PIPQUIET); }; rm -rf build
	cd $(INSTALL_CHECK_VENV) && bin/python $(CURDIR)/tools/install_check.py

# Re-vendor MathJax 3 from the npm registry (the site must render math with no CDN).
mathjax:
	rm -rf /tmp/learnthy-mathjax && mkdir -p /tmp/learnthy-mathjax
	cd /tmp/learnthy-mathjax && npm pack -q mathjax@3 && tar xzf mathjax-*.tgz
	cp /tmp/learnthy-mathjax/package/es5/tex-chtml-full.js book/_static/mathjax/
	rm -rf book/_static/mathjax/output && mkdir -p book/_static/mathjax/output/chtml/fonts
	cp -r /tmp/learnthy-mathjax/package/es5/output/chtml/fonts/woff-v2 book/_static/mathjax/output/chtml/fonts/

clean:
	rm -rf book/_build .pytest_cache
