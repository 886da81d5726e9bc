# The README's two commands: `make demo` and `make test`. Each installs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/demo

.PHONY: install demo test lint bench clean

install: $(BIN)/ichkit

# Reinstalled when the dependencies change.
$(BIN)/ichkit: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[deep,web,dask,test]"
	touch $@

demo: install
	rm -rf $(DEMO)
	$(BIN)/ichkit phantom $(DEMO)/phantom --scans 12 --seed 0
	$(BIN)/ichkit data inspect $(DEMO)/phantom
	$(BIN)/ichkit run experiments/configs/quick.yaml --data $(DEMO)/phantom --out $(DEMO)/run

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Feature speed against pyradiomics (a benchmark-only dependency, built from source).
bench: install
	$(BIN)/python -m pip install --quiet versioneer wheel
	$(BIN)/python -m pip install --quiet --no-build-isolation pyradiomics
	$(BIN)/python benchmarks/features_bench.py

clean:
	rm -rf $(VENV) runs *.egg-info
