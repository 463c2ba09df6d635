# Quick start: `make demo` runs the main job on the embedded default, `make test` runs the tests.
# Both create or refresh the virtual environment in .venv from constraints.txt.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo serve-demo test venv bench lint clean-venv nam-venvs nam-check capture serve-capture

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

DEMO_PASSWORD := results/webapp/demo-admin-password

demo: $(STAMP)
	$(PY) -m models study models/studies/demo.yaml --jobs 2
	@$(MAKE) --no-print-directory stimuli/demo/manifest.json
	@$(MAKE) --no-print-directory serve-demo

# Serve the demo test on 127.0.0.1:8000. A random admin password is made once, kept (readable by
# you only) beside the stored hash in the git-ignored results/, and printed each time.
serve-demo: $(STAMP)
	@mkdir -p results/webapp
	@test -s $(DEMO_PASSWORD) || { umask 077; $(PY) -c "import secrets; print(secrets.token_urlsafe(12))" > $(DEMO_PASSWORD); \
		$(PY) -m webapp set-password --password-stdin < $(DEMO_PASSWORD) >/dev/null; }
	@echo "admin password: $$(cat $(DEMO_PASSWORD))   (admin page: http://127.0.0.1:8000/admin/)"
	$(PY) -m webapp serve stimuli/demo

# The demo's MUSHRA stimulus set, rebuilt only when the study's results changed.
stimuli/demo/manifest.json: results/zoo/demo/runs.csv stimulus_sets/sets/demo.yaml
	$(PY) -m stimulus_sets build stimulus_sets/sets/demo.yaml --out stimuli/demo --force
	$(PY) -m stimulus_sets check stimuli/demo

# Distill a capture (README, "From a .nam capture to smaller .nam students"): the demo's trained WaveNet,
# exported as a .nam, stands in for a downloaded capture; capture.yaml trains NAM-shaped students of it,
# every student is exported as a .nam (format 0.7.0, NAM 0.13 and current plug-ins), a MUSHRA set with
# the capture as reference is built and checked, and a simulated panel's report is written.
CAPTURE_NAM := results/exports/capture/demo-wavenet.nam

results/zoo/demo/runs.csv: models/studies/demo.yaml | $(STAMP)
	$(PY) -m models study models/studies/demo.yaml --jobs 2

$(CAPTURE_NAM): results/zoo/demo/runs.csv
	$(PY) -m models export results/zoo/demo --select recipe=slimmable,width=1 --format nam --nam-version 0.7.0 \
		--out $(dir $(CAPTURE_NAM)) --name demo-wavenet

capture: $(STAMP) $(CAPTURE_NAM)
	$(PY) -m models study models/studies/capture.yaml --jobs 2
	$(PY) -m models export results/zoo/capture --all --format nam --nam-version 0.7.0 --out results/exports/capture/students
	$(PY) -m stimulus_sets build stimulus_sets/sets/capture.yaml --out stimuli/capture --force
	$(PY) -m stimulus_sets check stimuli/capture
	$(PY) -m evaluation simulate --stimuli stimuli/capture --out results/capture-simulated.csv
	$(PY) -m evaluation report --ratings results/capture-simulated.csv --stimuli stimuli/capture --out results/reports/capture

serve-capture: $(STAMP)
	$(PY) -m webapp serve stimuli/capture

test: $(STAMP)
	$(PY) -m pytest -q

# Neural Amp Modeler's Python package 0.12.x and 0.13.x, each in its own environment on the pinned CPU torch
# (installed first, and named again, so that pip keeps it), outside .venv: `make nam-check` loads and renders
# Earshot's .nam exports with both (models/export/nam_check.py). Only pip packages are downloaded.
NAM_VENVS ?= .nam-venvs
NAM_012 := 0.12.3
NAM_013 := 0.13.0

$(NAM_VENVS)/%/.installed: constraints.txt
	@test -x $(NAM_VENVS)/$*/bin/python || $(PYTHON) -m venv $(NAM_VENVS)/$* || python3 -m venv $(NAM_VENVS)/$*
	$(NAM_VENVS)/$*/bin/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(NAM_VENVS)/$*/bin/python -m pip install --quiet -c constraints.txt torch==2.13.0 "neural-amp-modeler==$(NAM_$(subst .,,$*))"
	@touch $@

nam-venvs: $(NAM_VENVS)/0.12/.installed $(NAM_VENVS)/0.13/.installed

nam-check: $(STAMP) nam-venvs
	$(PY) -m models.export.nam_check --venv-012 $(NAM_VENVS)/0.12 --venv-013 $(NAM_VENVS)/0.13

bench: $(STAMP)
	$(PY) -m models bench

lint: $(STAMP)
	$(VENV)/bin/ruff check models webapp evaluation tests

clean-venv:
	rm -rf $(VENV)
