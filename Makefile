# Quick start:  make demo   (set up .venv, build the sample database, search it)
#               make serve  (the search as a web page and HTTP API on http://127.0.0.1:8000/)
#               make test   (set up .venv, run every test; what CI runs)
#               make setup GPU=1  (also torch's CUDA build, for --device cuda: docs/install.md)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo serve test test-fast lint browser-deps clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# `make setup GPU=1`: also the CUDA build of torch (requirements-gpu.txt), for --device cuda.
GPU ?=
GPU_STAMP := $(VENV)/.installed-gpu

$(GPU_STAMP): $(STAMP) requirements-gpu.txt
	$(PY) -c "import sys, torch; sys.exit(torch.version.cuda is None)" || $(PY) -m pip uninstall -q -y torch
	$(PY) -m pip install -q -r requirements-gpu.txt
	@$(PY) -c "import sys, torch; sys.exit(torch.version.cuda is None)" || \
		{ echo "error: pip installed torch $$($(PY) -c 'import torch; print(torch.__version__)') without CUDA; \
	see docs/install.md (GPUs)"; exit 1; }
	@$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
	'- devices seen:', torch.cuda.device_count())"
	touch $(GPU_STAMP)

setup: $(STAMP) $(if $(GPU),$(GPU_STAMP))

demo: setup
	$(VENV)/bin/similar-images demo

# The web page and API over the demo's sample database (built first if missing).
DEMO_DB := demo_output/sample_efficientnet-lite0
serve: setup
	test -f $(DEMO_DB).saved_predictions.npy || $(VENV)/bin/similar-images demo
	$(VENV)/bin/similar-images serve --vectors $(DEMO_DB).saved_predictions.npy --index $(DEMO_DB).faiss.index \
		--image-dir demo_output/photos

# Headless Chromium for the notebook's browser test (Debian's package; needs root or sudo).
browser-deps:
	@bash scripts/install-browser.sh

# The layer contract (pyproject.toml, docs/architecture.md) and the linter.
lint: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .

test: setup lint browser-deps
	$(PY) -m pytest

# Skips the slow and browser tests: for a quick local loop only; CI runs everything.
test-fast: setup
	$(PY) -m pytest -m "not slow and not browser"

clean:
	rm -rf $(VENV) .pytest_cache
