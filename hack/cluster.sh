#!/usr/bin/env bash
# The local Kubernetes the tests and the demo run against, without Docker:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller, started by
# kwokctl's binary runtime on loopback. kwok's simulated nodes get pods scheduled and Running, and
# pods a Job owns Succeeded (kwokctl's default stages, kustomize/stage/pod/fast of kwok v0.8.0:
# pod-ready, pod-complete, pod-delete), so the Job controller completes the operator's Jobs.
# Room for 1,000 stacks (bench/bench_operator_scale.py): 65,536 Service IPs (10.0.0.0/16, so the
# `kubernetes` Service keeps 10.0.0.1) instead of kwokctl's 254, and no client rate limits on the
# controller manager, scheduler and kwok (their default 20 to 50 requests/s would make creating the
# pods of 1,000 stacks take most of an hour). kwokctl v0.8.0 indexes --extra-args patches by where
# a component's first one stands: a component other than the first may have only one, or it panics.
#
#   hack/cluster.sh up       start (or reuse) the cluster; the last line is `export KUBECONFIG=...`
#   hack/cluster.sh down     stop it and remove its state
#   hack/cluster.sh status   exit 0 when it answers
#
# Binaries come from tools/ensure.sh (built from pinned Go modules, cached outside the clone).
# State lives in .cluster/ of this clone, so two clones never share a cluster.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${AGENTOBS_CLUSTER_DIR:-$root/.cluster}
name=agentobs
kubeconfig=$state/kubeconfig
nodes=${AGENTOBS_CLUSTER_NODES:-3}
export KWOK_WORKDIR=$state/kwok

say() { echo "cluster: $*" >&2; }

bins() {
  K8S=$("$root/tools/ensure.sh" kubernetes)
  ETCD=$("$root/tools/ensure.sh" etcd)
  KWOK=$("$root/tools/ensure.sh" kwok)
  export KWOK_KUBECTL_BINARY=$K8S/kubectl
  KUBE_VERSION=$(basename "$K8S"); KUBE_VERSION=${KUBE_VERSION#kubernetes-}
}

kubectl_() { "$K8S/kubectl" --kubeconfig "$kubeconfig" "$@"; }

answers() { [ -f "$kubeconfig" ] && kubectl_ get --raw /readyz >/dev/null 2>&1; }

up() {
  bins
  if answers; then
    say "reusing the running cluster"
  else
    [ -d "$KWOK_WORKDIR/clusters/$name" ] && "$KWOK/kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || true
    rm -rf "$state"; mkdir -p "$state"
    say "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok ($KUBE_VERSION)"
    # What a real node (hack/node.sh) needs of the API server, harmless without one: a serving
    # certificate valid for the in-cluster address (the `kubernetes` Service, 10.0.0.1) and for the
    # host end of the node's veth, which is also the address the Service points pods at; a client
    # certificate for kubectl logs/exec; nodes reached by InternalIP; the admission plugins that let
    # a test namespace put its pods on the real node without touching the product's manifests.
    local pki=$KWOK_WORKDIR/clusters/$name/pki
    cat >"$state/kwokctl.yaml" <<'CONF'
kind: KwokctlConfiguration
apiVersion: config.kwok.x-k8s.io/v1alpha1
options:
  kubeApiserverCertSANs: ["10.0.0.1", "10.201.0.1"]
# One controller-manager and one scheduler: no leader election. On a loaded machine a slow API
# server made them lose their Lease and exit (nothing restarts them), and Deployments stood still.
componentsPatches:
- name: kube-controller-manager
  extraArgs: [{key: leader-elect, value: "false"}]
- name: kube-scheduler
  extraArgs: [{key: leader-elect, value: "false"}]
CONF
    # kwokctl's binary runtime always starts the kwok controller managing every node, which would
    # fake the pods of a real node; this wrapper scopes it to the nodes kwokctl makes (annotated
    # kwok.x-k8s.io/node=fake). kwokctl's own flag for that crashes (v0.8.0).
    cat >"$state/kwok-controller" <<WRAP
#!/usr/bin/env bash
args=()
for a in "\$@"; do
  case \$a in
    --manage-all-nodes=true) args+=(--manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake) ;;
    *) args+=("\$a") ;;
  esac
done
exec "$KWOK/kwok" "\${args[@]}"
WRAP
    chmod +x "$state/kwok-controller"
    KWOK_KUBE_VERSION=$KUBE_VERSION "$KWOK/kwokctl" create cluster --name "$name" --runtime binary \
      --config "$state/kwokctl.yaml" \
      --extra-args kube-apiserver=advertise-address=10.201.0.1 \
      --extra-args kube-apiserver=kubelet-preferred-address-types=InternalIP,Hostname \
      --extra-args "kube-apiserver=kubelet-client-certificate=$pki/admin.crt" \
      --extra-args "kube-apiserver=kubelet-client-key=$pki/admin.key" \
      --extra-args kube-apiserver=enable-admission-plugins=NodeRestriction,PodNodeSelector,PodTolerationRestriction \
      --extra-args kube-apiserver=service-cluster-ip-range=10.0.0.0/16 \
      --kube-apiserver-binary "$K8S/kube-apiserver" \
      --kube-controller-manager-binary "$K8S/kube-controller-manager" \
      --kube-scheduler-binary "$K8S/kube-scheduler" \
      --kwok-controller-binary "$state/kwok-controller" \
      --etcd-binary "$ETCD/etcd" \
      --kube-authorization --kube-admission --secure-port \
      --extra-args kube-controller-manager=enable-hostpath-provisioner=true --disable-qps-limits \
      --kubeconfig "$kubeconfig" --wait 3m --quiet-pull >&2
    "$KWOK/kwokctl" scale node --name "$name" --replicas "$nodes" >&2
    # What a real cluster has and kwok does not: a default StorageClass whose claims get volumes
    # (kube-controller-manager's host-path provisioner makes them).
    kubectl_ apply -f - >&2 <<'YAML'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
YAML
    kubectl_ wait --for=condition=Ready node --all --timeout=120s >&2
  fi
  echo "export KUBECONFIG=$kubeconfig"
}

down() {
  bins
  "$KWOK/kwokctl" delete cluster --name "$name" >&2 || true
  rm -rf "$state"
  say "stopped"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) bins; answers ;;
  *) echo "usage: hack/cluster.sh up|down|status" >&2; exit 2 ;;
esac
