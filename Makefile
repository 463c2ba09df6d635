# Quick start: `make demo` runs the main job on the embedded default, `make test` runs the tests.
# Both create or refresh the virtual environment in .venv from constraints.txt.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench lint clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m models study models/studies/demo.yaml
	@$(MAKE) --no-print-directory stimuli/demo/manifest.json

# The demo's MUSHRA stimulus set, rebuilt only when the study's results changed.
stimuli/demo/manifest.json: results/zoo/demo/runs.csv models/studies/demo_stimuli.yaml
	$(PY) -m models stimuli models/studies/demo_stimuli.yaml --out stimuli/demo --force
	$(PY) -m models stimuli --check stimuli/demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m models bench

lint: $(STAMP)
	$(VENV)/bin/ruff check models webapp evaluation tests

clean-venv:
	rm -rf $(VENV)
