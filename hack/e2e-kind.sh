#!/usr/bin/env bash
# `make e2e`: the suite on a real cluster, where pods run and data is asserted to arrive.
# Needs a Docker engine (CI elsewhere; not this machine): builds the operator image, creates a kind
# cluster (kind built from tools/kind), loads the image, installs the chart with the stack, and
# runs e2e/ against it. AGENTOBS_E2E_KEEP=1 leaves the cluster up.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "e2e: needs a running Docker engine" >&2; exit 2; }

kind=$("$root/tools/ensure.sh" kind)/kind
helm=$("$root/tools/ensure.sh" helm)/helm
kubectl=$("$root/tools/ensure.sh" kubernetes)/kubectl
cluster=agentobs-e2e
image=agentobs-operator:e2e
export KUBECONFIG=$root/.cluster/e2e-kubeconfig
mkdir -p "$root/.cluster"

docker build -t "$image" "$root"
"$kind" get clusters | grep -qx "$cluster" || "$kind" create cluster --name "$cluster" --wait 180s
"$kind" load docker-image "$image" --name "$cluster"
# The release namespace runs the node log collector: Pod Security `privileged` before it starts.
"$kubectl" create namespace agentobs-system --dry-run=client -o yaml | "$kubectl" apply -f -
"$kubectl" label namespace agentobs-system pod-security.kubernetes.io/enforce=privileged --overwrite
# The stack goes to namespace `agents` (stack.namespace), which the chart creates `restricted`.
"$helm" upgrade --install agentobs "$root/charts/agentobs" --namespace agentobs-system \
  --set operator.image.repository="${image%:*}" --set operator.image.tag="${image#*:}" \
  --set operator.image.pullPolicy=Never --set stack.enabled=true --wait --timeout 10m

status=0
AGENTOBS_E2E_KUBECONFIG=$KUBECONFIG AGENTOBS_E2E_NAMESPACE=agents AGENTOBS_E2E_OPERATOR_NAMESPACE=agentobs-system \
  "$root/.venv/bin/python" -m pytest "$root/e2e" -q || status=$?
[ "${AGENTOBS_E2E_KEEP:-}" = 1 ] || "$kind" delete cluster --name "$cluster"
exit $status
