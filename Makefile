# The README's two commands: `make demo` and `make test`. Each installs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/demo

.PHONY: install demo test lint bench clean FORCE

PACKAGE_DIRS := src/ichkit scans features classical deep ensemble experiments webapp

install: $(BIN)/ichkit

# ichkit is installed in editable *strict* mode (setup.cfg says why): a tree of links to
# the source files under build/. Edits show at once; a new or removed file needs a
# reinstall, so the install also depends on the list of package files.
SOURCE_LIST := $(VENV)/ichkit-sources.txt
$(SOURCE_LIST): FORCE
	@mkdir -p $(VENV)
	@find $(PACKAGE_DIRS) -type f \( -name '*.py' -o -name '*.yaml' -o -name '*.html' \) \
		-not -path '*/__pycache__/*' | sort >$@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@

# Reinstalled when the dependencies or the package files change.
$(BIN)/ichkit: setup.cfg pyproject.toml $(SOURCE_LIST)
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	rm -rf build/__editable__.*
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		--config-settings editable_mode=strict -e ".[deep,web,dask,test]"
	touch $@

demo: install
	rm -rf $(DEMO)
	$(BIN)/ichkit phantom $(DEMO)/phantom --scans 18 --slices 12 --seed 0
	$(BIN)/ichkit data inspect $(DEMO)/phantom
	$(BIN)/ichkit run quick --data $(DEMO)/phantom --out $(DEMO)/run --cv 3

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Feature speed against pyradiomics (a benchmark-only dependency, built from source).
bench: install
	$(BIN)/python -m pip install --quiet versioneer wheel
	$(BIN)/python -m pip install --quiet --no-build-isolation pyradiomics
	$(BIN)/python benchmarks/features_bench.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
