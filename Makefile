# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MATERIAL := .cache/material
MATERIAL_STAMP := $(MATERIAL)/.installed
# GitHub's REST description: the package is 385 MB unpacked, so only its one file is kept.
OPENAPI_VERSION := 23.0.2
OPENAPI := $(MATERIAL)/api.github.com.json

.PHONY: install material run test lint typecheck unit bench demo diagram clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# Real payloads and API descriptions published by GitHub and Discord (DESIGN §6),
# installed from the npm registry with the pinned lockfile; never copied into the repo.
material: $(MATERIAL_STAMP)

$(MATERIAL_STAMP): tests/material/package.json tests/material/package-lock.json
	mkdir -p $(MATERIAL)
	cp tests/material/package.json tests/material/package-lock.json $(MATERIAL)/
	cd $(MATERIAL) && npm ci --no-audit --no-fund --loglevel=error
	cd $(MATERIAL) && npm pack --silent @octokit/openapi@$(OPENAPI_VERSION) >/dev/null \
		&& tar -xzf octokit-openapi-$(OPENAPI_VERSION).tgz -O package/generated/api.github.com.json > api.github.com.json.tmp \
		&& mv api.github.com.json.tmp api.github.com.json && rm octokit-openapi-$(OPENAPI_VERSION).tgz
	touch $@

run: install
	$(BIN)/valine serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy src

unit: install material
	$(BIN)/pytest

test: lint typecheck unit

bench: install material
	$(BIN)/python bench/run.py

demo: install
	$(BIN)/valine demo

diagram: install
	$(BIN)/python -c "from valine.core.states import mermaid_diagram; print(mermaid_diagram())" > docs/state-machine.md

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
