# agentobs: every task of the project, from a fresh clone. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CLUSTER_DIR ?= $(CURDIR)/.cluster
export KUBECONFIG ?= $(CLUSTER_DIR)/kubeconfig

.PHONY: help install tools debs generate verify cluster-up cluster-down node-up node-down images run demo \
        demo-down test test-unit test-components test-controlplane chart-test test-node bench e2e clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml sdk/pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e './sdk' -e '.[test]'
	touch $@

install: $(STAMP) ## Create .venv with the operator, the SDK and the test tools

# Prometheus and Alertmanager for the component tests; containerd, runc, the CNI plugins, iptables
# and Debian's python3.11 (the Python images' interpreter) for the real node; Maven fetches the
# OpenSearch jars of the tests' Elasticsearch-API stand-in image (hack/standin.py).
DEBS := prometheus prometheus-alertmanager containerd runc containernetworking-plugins iptables conntrack \
        python3.11-minimal python3.11-venv maven
debs: ## Install the Debian packages the tests use (Prometheus, Alertmanager; containerd and friends for the real node)
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends $$missing >/dev/null; fi

TOOLS := kubernetes etcd kwok helm jaeger prometheus alertmanager coredns
tools: ## Build (or reuse) the pinned Go programs: Kubernetes, etcd, kwok, helm, Jaeger v2, Prometheus, Alertmanager, CoreDNS
	@for t in $(TOOLS); do tools/ensure.sh $$t >/dev/null; done

generate: $(STAMP) ## Regenerate the CRD from the pydantic models
	$(PY) hack/generate.py

verify: $(STAMP) ## Generated files up to date, ruff, and mypy --strict on the operator and the SDK
	$(PY) hack/generate.py --check
	$(VENV)/bin/ruff check operator sdk hack tests e2e bench
	$(VENV)/bin/mypy --strict operator/agentobs
	$(VENV)/bin/mypy --strict sdk/agentobs_sdk

cluster-up: tools ## Start the local cluster (etcd, apiserver, controllers, kwok); prints export KUBECONFIG=...
	@hack/cluster.sh up

cluster-down: ## Stop the local cluster and delete its state
	@hack/cluster.sh down

node-up: $(STAMP) tools debs ## Join a real node (containerd, kubelet, kube-proxy, CoreDNS) to the local cluster
	@hack/cluster.sh up >/dev/null && hack/node.sh up

node-down: ## Stop the real node and remove everything it made on this machine
	@hack/node.sh down

images: $(STAMP) tools debs ## Build the container images of the real node (hack/images.py) without Docker or a registry
	$(PY) hack/images.py build

run: $(STAMP) ## Run the operator in the foreground against $KUBECONFIG, installing the CRD first
	$$(tools/ensure.sh kubernetes)/kubectl apply --server-side -f crds/
	$(PY) -m agentobs.main

demo: $(STAMP) tools ## Local cluster + operator + examples/minimal.yaml, waited on until Ready; left running
	@hack/demo.sh up

demo-down: ## Stop the demo's operator and cluster
	@hack/demo.sh down

test: $(STAMP) tools debs ## Every tier that runs here: unit, components, control plane, chart, real node (starts the cluster)
	$(PY) -m pytest tests -q

test-unit: $(STAMP) ## Unit tests: pure functions, no cluster, no network
	$(PY) -m pytest tests/unit tests/sdk -q -m 'not controlplane'

test-components: $(STAMP) tools debs ## Real programs on generated files: promtool, Alertmanager, Jaeger, Prometheus
	$(PY) -m pytest tests/components tests/sdk -q

test-controlplane: $(STAMP) tools ## The operator and webhook against the local cluster
	$(PY) -m pytest tests/controlplane -q

chart-test: $(STAMP) tools ## helm lint, template + schema, install/upgrade/uninstall on the local cluster
	$(PY) -m pytest tests/chart -q

test-node: $(STAMP) tools debs ## The real-node tier: operator, webhook and agents as real containers (starts and stops the node)
	$(PY) -m pytest tests/node -q

bench: $(STAMP) tools debs ## Benchmarks: SDK helpers, webhook latency, operator scale (AGENTOBS_BENCH_SIZES), as ratios to baselines in the same run
	$(PY) bench/bench_sdk.py
	$(PY) bench/bench_webhook.py
	$(PY) bench/bench_operator_scale.py

e2e: $(STAMP) ## The suite against a kind cluster (needs Docker and kind; not on this machine)
	hack/e2e-kind.sh

clean: ## Remove the venv and local cluster state (the tool cache outside the clone stays)
	-hack/node.sh down
	-hack/cluster.sh down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
