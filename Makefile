# Two entry points (README): `make demo` and `make test`. Both build .venv from Python 3.11 with the
# pinned dependencies in constraints.txt (torch 2.13.0 CPU build; no CUDA packages).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: demo test env bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all]"
	touch $@

env: $(VENV)/.installed

demo: env
	$(PY) -m disco_plug.demo

test: env
	$(PY) -m pytest -q

bench: env
	$(VENV)/bin/disco-plug bench

clean:
	rm -rf $(VENV) build *.egg-info
