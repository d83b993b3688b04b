# Two commands on a fresh machine:   make demo   (main job on synthetic data)   make test   (the test suite)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: demo test test-slow test-pacs venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU wheel (a plain `torch` would pull a multi-GB CUDA build)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/sranet demo --out $(DEMO_OUT)

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

# round trips through a real Orthanc (needs the `orthanc` Debian package; .ci/run installs it)
test-pacs: venv
	$(PY) -m pytest -q -m pacs

clean:
	rm -rf $(VENV) runs
