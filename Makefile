# Two commands do all set-up on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fkdlib-installed
PROFILE ?= default

.PHONY: reproduce test test-real smoke lab site benchmarks transfer preview clean-cache

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

reproduce: $(STAMP)
	$(VENV)/bin/fkd reproduce --profile $(PROFILE)

test: $(STAMP)
	$(PY) -m pytest -q

# every notebook on every real-data source (the suite runs one source per notebook)
test-real: $(STAMP)
	FKD_REAL_DATA_MATRIX=1 $(PY) -m pytest -q tests/test_real_data_notebooks.py

smoke: $(STAMP)
	$(VENV)/bin/fkd reproduce --profile smoke

# JupyterLab on the notebooks, with this project's .venv as the kernel
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks

# a static HTML report under build/site/ (and a screenshot of it where Chromium is installed)
site: $(STAMP)
	$(VENV)/bin/fkd site $$(command -v chromium >/dev/null && echo --screenshot build/site/index.png)

# Speed and memory ratios (minutes); the SynthFace -> real LFW transfer has its own target,
# since it trains 12 models (about half an hour cold on 2 cores) and needs LFW (data/README.md).
benchmarks: $(STAMP)
	for script in benchmarks/*.py; do \
	  [ $$script = benchmarks/synthface_transfer.py ] || $(PY) $$script || exit 1; done

transfer: $(STAMP)
	$(PY) benchmarks/synthface_transfer.py

preview: $(STAMP)
	$(VENV)/bin/fkd synth preview --out figures/synthface_preview.png

clean-cache:
	rm -rf data/cache
