# agentobs: every task of the project, from a fresh clone. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CLUSTER_DIR ?= $(CURDIR)/.cluster
export KUBECONFIG ?= $(CLUSTER_DIR)/kubeconfig

.PHONY: help install tools debs generate verify lint typecheck cluster-up cluster-down run demo demo-down \
        test test-unit test-controlplane bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml sdk/pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e './sdk' -e '.[test]'
	touch $@

install: $(STAMP) ## Create .venv with the operator, the SDK and the test tools

debs: ## Install the Debian packages the tests use (promtool and Prometheus)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

tools: ## Build (or reuse) the pinned Go programs: Kubernetes, etcd, kwok, helm
	@for t in kubernetes etcd kwok helm; do tools/ensure.sh $$t >/dev/null; done

generate: $(STAMP) ## Regenerate the CRD from the pydantic models
	$(PY) hack/generate.py

verify: $(STAMP) ## Generated files up to date, ruff, and mypy --strict on the operator
	$(PY) hack/generate.py --check
	$(VENV)/bin/ruff check operator hack tests e2e bench
	$(VENV)/bin/mypy --strict operator/agentobs

cluster-up: tools ## Start the local cluster (etcd, apiserver, controllers, kwok); prints export KUBECONFIG=...
	@hack/cluster.sh up

cluster-down: ## Stop the local cluster and delete its state
	@hack/cluster.sh down

run: $(STAMP) ## Run the operator in the foreground against $KUBECONFIG, installing the CRD first
	$$(tools/ensure.sh kubernetes)/kubectl apply --server-side -f crds/
	$(PY) -m agentobs.main

demo: $(STAMP) tools ## Local cluster + operator + examples/minimal.yaml, waited on until Ready; left running
	@hack/demo.sh up

demo-down: ## Stop the demo's operator and cluster
	@hack/demo.sh down

test: $(STAMP) tools debs ## Unit and control-plane tests (brings the local cluster up itself)
	$(PY) -m pytest tests -q

test-unit: $(STAMP) ## Unit tests only: no cluster, no network
	$(PY) -m pytest tests -q -m 'not controlplane'

bench: $(STAMP) ## Benchmarks: ratios against a baseline measured in the same run
	$(PY) bench/bench_sdk.py

clean: ## Remove the venv and local cluster state (the tool cache outside the clone stays)
	-hack/cluster.sh down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
