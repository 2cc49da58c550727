# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Pin torch in the same pip command whenever it is installed (a looser pin pulls GBs of CUDA).
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: venv models demo test lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e '.[test]'
	touch $@

models: venv
	$(BIN)/camd models prepare

demo: models
	$(BIN)/camd demo

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/camd models prepare
	$(BIN)/python -m pytest -q

bench: models
	$(BIN)/camd bench $(or $(SOURCE),demo)

clean:
	rm -rf $(VENV) var build *.egg-info
