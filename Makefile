# Two commands on a fresh machine:   make demo   (main job on synthetic data)   make test   (the test suite)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: demo test test-integration test-slow test-pacs test-triton triton-server venv clean
TRITON_ENV ?= .triton/env

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

# end-to-end paths of several seconds each (every export variant, node round trips, CLI runs, the demo)
test-integration: venv
	$(PY) -m pytest -q -m integration

test-slow: venv
	$(PY) -m pytest -q -m slow

# round trips through a real Orthanc (needs the `orthanc` Debian package; .ci/run installs it)
test-pacs: venv
	$(PY) -m pytest -q -m pacs

# a real Triton server for the `triton` tests: its own environment (the wheel's Python stub needs numpy < 2), with
# the nvidia-pytriton wheel (tritonserver + Python backend, ~150 MB) and what the Python-backend model imports
$(TRITON_ENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TRITON_ENV)
	$(TRITON_ENV)/bin/python -m pip install --quiet --upgrade pip
	$(TRITON_ENV)/bin/python -m pip install --quiet "numpy<2" onnx onnxruntime
	$(TRITON_ENV)/bin/python -m pip install --quiet --no-deps "nvidia-pytriton==0.7.0"
	$(TRITON_ENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

triton-server: $(TRITON_ENV)/.installed

test-triton: venv triton-server
	$(PY) -m pytest -q -m triton

clean:
	rm -rf $(VENV) runs .triton
