#!/usr/bin/env bash
# `make demo`: the local cluster, the CRD, the operator in the background, examples/minimal.yaml
# applied and waited on until Ready. Leaves everything running; `make demo-down` stops it.
#
#   hack/demo.sh up | down
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${AGENTOBS_CLUSTER_DIR:-$root/.cluster}
ns=${AGENTOBS_DEMO_NAMESPACE:-agentobs-demo}
python=${PYTHON:-$root/.venv/bin/python}

up() {
  eval "$("$root/hack/cluster.sh" up)"
  kubectl=$("$root/tools/ensure.sh" kubernetes)/kubectl
  "$kubectl" apply --server-side -f "$root/crds/" >/dev/null
  # Not `kubectl wait --for=condition=Established`: on a CRD too new to have a status it fails at
  # once instead of waiting.
  local established=""
  for _ in $(seq 300); do
    established=$("$kubectl" get crd/agentobservabilities.agentobs.io \
      -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null || true)
    [ "$established" = True ] && break
    sleep 0.2
  done
  if [ "$established" != True ]; then
    echo "demo: the AgentObservability CRD was not Established after 60 s" >&2
    exit 1
  fi

  pidfile=$state/operator.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "demo: operator already running (pid $(cat "$pidfile"))"
  else
    # Scoped to the demo namespace, so `make test` on the same cluster runs its own operator.
    AGENTOBS_NAMESPACES=$ns AGENTOBS_BIND_ADDRESS=127.0.0.1 AGENTOBS_METRICS_PORT=${AGENTOBS_METRICS_PORT:-18080} \
      AGENTOBS_HEALTH_PORT=${AGENTOBS_HEALTH_PORT:-18081} \
      nohup "$python" -m agentobs.main >"$state/operator.log" 2>&1 &
    echo $! >"$pidfile"
    echo "demo: operator started (pid $!, log $state/operator.log)"
  fi

  "$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
  "$kubectl" apply -n "$ns" -f "$root/examples/minimal.yaml"
  echo "demo: waiting for agentobservability/minimal to be Ready"
  "$kubectl" wait -n "$ns" --for=condition=Ready aobs/minimal --timeout=300s
  echo
  "$kubectl" get -n "$ns" aobs -o wide
  echo
  "$kubectl" get -n "$ns" statefulsets,pods,services,configmaps,secrets,pvc,poddisruptionbudgets \
    -l app.kubernetes.io/managed-by=agentobs-operator
  echo
  echo "demo: cluster and operator are left running. KUBECONFIG=$state/kubeconfig"
  echo "demo: stop both with: make demo-down"
}

down() {
  pidfile=$state/operator.pid
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  "$root/hack/cluster.sh" down
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: hack/demo.sh up|down" >&2; exit 2 ;;
esac
