#!/usr/bin/env bash
# A real node for the local cluster: containerd, kubelet and kube-proxy on this machine, joined to
# the control plane of hack/cluster.sh beside its kwok nodes, running real containers from the
# images hack/images.py assembles (no Docker, no registry).
#
#   hack/node.sh up       start the node (the cluster must be up); imports the images
#   hack/node.sh down     stop it and remove everything it made: processes, mounts, cgroups,
#                         the network namespace, its veth and routes, the Node and its DNS
#   hack/node.sh check    exit 0 when this machine can run the node; else print why (exit 1)
#   hack/node.sh leftovers   print what of the node is still on this machine (exit 1 if anything)
#
# Containment. Everything runs inside the network namespace `agentobs-node`, reached from the host
# through one veth pair (host 10.201.0.1, node 10.201.0.2): the pod bridge, pod addresses
# (10.201.1.0/24) and kube-proxy's iptables rules live in that namespace and vanish with it. The
# daemons share one private mount namespace, so the volumes and container root
# filesystems they mount vanish with their last process. Their processes live in cgroups of their
# own (`agentobs-node*` in every hierarchy), which `down` empties and removes. On the host there are
# only the veth and two routes (pods and Services via the node), gone with the namespace.
#
# The node is tainted `agentobs.io/real-node=true:NoSchedule` and labelled
# `agentobs.io/real-node=true`: only pods that tolerate the taint land here. Tests put whole
# namespaces on it with the PodNodeSelector and PodTolerationRestriction admission plugins
# (namespace annotations), so the product's own manifests need no change. DNS: CoreDNS in the
# namespace agentobs-node-system with the Service IP 10.0.0.10.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster_state=${AGENTOBS_CLUSTER_DIR:-$root/.cluster}
state=$cluster_state/node
kubeconfig=$cluster_state/kubeconfig
netns=agentobs-node
node=agentobs-node
host_if=aobs-node0
host_ip=10.201.0.1
node_ip=10.201.0.2
pod_cidr=10.201.1.0/24
service_cidr=10.0.0.0/16
dns_ip=10.0.0.10
# Daemons first: a containerd or kubelet still alive would start containers while pods are killed.
cgroups=(agentobs-node-daemons agentobs-node)
dns_ns=agentobs-node-system

say() { echo "node: $*" >&2; }

bins() {
  K8S=$("$root/tools/ensure.sh" kubernetes)
  kubectl_() { "$K8S/kubectl" --kubeconfig "$kubeconfig" "$@"; }
}

check() {
  local missing=()
  [ "$(id -u)" = 0 ] || { echo "needs root (containerd, kubelet, network namespaces)"; return 1; }
  for c in containerd containerd-shim-runc-v2 runc ctr ip iptables conntrack nsenter; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  [ -x /usr/bin/python3.11 ] || missing+=(python3.11)
  [ ${#missing[@]} -eq 0 ] || { echo "missing programs: ${missing[*]} (make node-debs installs them)"; return 1; }
  grep -qw overlay /proc/filesystems || { echo "the kernel has no overlay filesystem"; return 1; }
  [ -d /sys/fs/cgroup/cpu ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || { echo "no cgroup filesystem"; return 1; }
  [ -f /sys/fs/cgroup/cgroup.controllers ] && { echo "cgroup v2 host: hack/node.sh handles only cgroup v1 so far"; return 1; }
  ip netns add agentobs-probe 2>/dev/null && ip netns del agentobs-probe || { echo "cannot create network namespaces"; return 1; }
  return 0
}

# -- cgroups (v1): a directory per hierarchy; cpuset needs its cpus and mems filled in first ------
cgroup_make() {
  local name=$1 h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h" ] || continue
    mkdir -p "$h$name"
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" >"$h$name/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$name/cpuset.mems"
    fi
  done
}

cgroup_procs() {  # every process in the cgroup $1 or below it, in any hierarchy
  find /sys/fs/cgroup/ -path "*/$1/*" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  cat /sys/fs/cgroup/*/"$1"/cgroup.procs 2>/dev/null || true
}

cgroup_empty_and_remove() {  # kill and remove until gone: a runc init may appear after a round
  local name=$1 h pids
  for _ in $(seq 1 40); do
    pids=$(cgroup_procs "$name" | sort -u)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && { kill -9 $pids 2>/dev/null || true; sleep 0.3; }
    for h in /sys/fs/cgroup/*/; do
      [ -d "$h$name" ] || continue
      find "$h$name" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    compgen -G "/sys/fs/cgroup/*/$name" >/dev/null || return 0
    sleep 0.5
  done
  say "cgroups $name still hold: $(cgroup_procs "$name" | sort -u | tr '\n' ' ')"
}

# -- network -----------------------------------------------------------------------------------
net_up() {
  ip netns add "$netns"
  ip link add "$host_if" type veth peer name eth0 netns "$netns"
  ip addr add "$host_ip/30" dev "$host_if"
  ip link set "$host_if" up
  ip -n "$netns" addr add "$node_ip/30" dev eth0
  ip -n "$netns" link set eth0 up
  ip -n "$netns" link set lo up
  ip -n "$netns" route add default via "$host_ip"
  ip route add "$pod_cidr" via "$node_ip" dev "$host_if"
  # The API server reaches Services (its webhooks) by their ClusterIP, as on any cluster: through
  # kube-proxy's rules, which live in the node's namespace.
  ip route add "$service_cidr" via "$node_ip" dev "$host_if"
  ip netns exec "$netns" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$netns" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  ip netns exec "$netns" sysctl -qw net.ipv4.conf.all.route_localnet=1
}

net_down() {
  ip netns pids "$netns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip link del "$host_if" 2>/dev/null || true
  ip netns del "$netns" 2>/dev/null || true
}

# -- configuration files -------------------------------------------------------------------------
server_url() {  # the API server as the node reaches it: same port, the host end of the veth
  local url; url=$(kubectl_ config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  echo "https://$host_ip:${url##*:}"
}

pki() {  # client certificates signed by the cluster's CA: kubelet as its node, kube-proxy as itself
  local ca_dir; ca_dir=$(dirname "$(find "$cluster_state/kwok" -path '*/pki/ca.crt' | head -1)")
  mkdir -p "$state/pki"
  cp "$ca_dir/ca.crt" "$state/pki/ca.crt"
  local who cn org
  for who in kubelet kube-proxy; do
    case $who in
      kubelet) cn=system:node:$node; org=system:nodes ;;
      kube-proxy) cn=system:kube-proxy; org=system:node-proxier ;;
    esac
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$state/pki/$who.key" \
      -subj "/O=$org/CN=$cn" -out "$state/pki/$who.csr" 2>/dev/null
    openssl x509 -req -in "$state/pki/$who.csr" -CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" \
      -CAcreateserial -days 2 -out "$state/pki/$who.crt" 2>/dev/null
    local server; server=$(server_url)
    cat >"$state/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority: "$state/pki/ca.crt"}}]
users: [{name: $who, user: {client-certificate: "$state/pki/$who.crt", client-key: "$state/pki/$who.key"}}]
contexts: [{name: local, context: {cluster: local, user: $who}}]
current-context: local
EOF
  done
}

write_configs() {
  mkdir -p "$state/cni/net.d" "$state/cni/ipam" "$state/containerd" "$state/kubelet" "$state/pod-logs"
  cat >"$state/cni/net.d/10-agentobs.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "agentobs-node",
  "plugins": [
    {"type": "bridge", "bridge": "aobs0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$state/cni/ipam",
              "ranges": [[{"subnet": "$pod_cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  cat >"$state/containerd/config.toml" <<EOF
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
[grpc]
  address = "$state/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # This machine refuses even root a higher oom_score_adj: without this every sandbox fails.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
EOF
  echo "nameserver $dns_ip" >"$state/resolv.conf"
  cat >"$state/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
# The host has cgroup v1 (Kubernetes 1.35 refuses it unless told).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /agentobs-node
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: unix://$state/containerd.sock
podLogsDir: $state/pod-logs
clusterDomain: cluster.local
clusterDNS: [$dns_ip]
resolvConf: $state/resolv.conf
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $state/pki/ca.crt}
authorization: {mode: Webhook}
registerWithTaints:
  - {key: agentobs.io/real-node, value: "true", effect: NoSchedule}
# The machine's disk is shared with everything else: evict only when truly out of room.
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
failSwapOn: false
serializeImagePulls: false
maxPods: 60
podPidsLimit: 4096
EOF
  cat >"$state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $state/kube-proxy.kubeconfig}
hostnameOverride: $node
bindAddress: $node_ip
clusterCIDR: $pod_cidr
mode: iptables
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the kernel's conntrack table sizes alone: they are not the namespace's to change.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# -- daemons: one supervisor inside the namespace, so they share one mount namespace -------------
start_daemons() {
  cgroup_make agentobs-node
  cgroup_make agentobs-node-daemons
  cat >"$state/run.sh" <<EOF
#!/usr/bin/env bash
# Started by hack/node.sh inside the namespace $netns; its children share this mount namespace.
set -u
# Where containerd keeps pod network namespaces, shim sockets and runc state: fixed paths under
# /run, made private here so that nothing of them outlives the node.
for d in /run/netns /run/containerd; do mkdir -p "\$d" && mount -t tmpfs -o mode=0711 agentobs-node "\$d"; done
containerd --config "$state/containerd/config.toml" >"$state/containerd.log" 2>&1 &
for i in \$(seq 1 100); do [ -S "$state/containerd.sock" ] && break; sleep 0.1; done
"$K8S/kubelet" --config "$state/kubelet/config.yaml" --kubeconfig "$state/kubelet.kubeconfig" \\
  --root-dir "$state/kubelet/root" --hostname-override "$node" --node-ip "$node_ip" \\
  --node-labels agentobs.io/real-node=true --v 1 >"$state/kubelet.log" 2>&1 &
"$K8S/kube-proxy" --config "$state/kube-proxy.yaml" --v 1 >"$state/kube-proxy.log" 2>&1 &
wait
EOF
  chmod +x "$state/run.sh"
  # Put the supervisor (and so every daemon, shim and container it starts) in our own cgroups.
  ( for h in /sys/fs/cgroup/*/; do [ -d "${h}agentobs-node-daemons" ] && echo $BASHPID >"${h}agentobs-node-daemons/cgroup.procs"; done
    # A private mount namespace (slave: the host's mounts show inside, none of ours leak out) and
    # the node's network namespace; not `ip netns exec`, whose fresh /sys would hide the cgroups.
    exec setsid unshare --mount --propagation slave nsenter --net="/run/netns/$netns" "$state/run.sh" ) \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$state/supervisor.pid"
  local i
  for i in $(seq 1 100); do [ -S "$state/containerd.sock" ] && break; sleep 0.2; done
  [ -S "$state/containerd.sock" ] || { say "containerd did not start: $(tail -5 "$state/containerd.log")"; return 1; }
}

import_images() {
  say "building and importing images (cached in ~/.cache/agentobs/images)"
  local py=$root/.venv/bin/python; [ -x "$py" ] || py=python3
  # shellcheck disable=SC2086
  "$py" "$root/hack/images.py" import --address "$state/containerd.sock" ${AGENTOBS_NODE_IMAGES:-} >"$state/images.txt"
}

dns_up() {
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $dns_ns
  labels: {app.kubernetes.io/part-of: agentobs-node}
  annotations:
    scheduler.alpha.kubernetes.io/node-selector: agentobs.io/real-node=true
    scheduler.alpha.kubernetes.io/defaultTolerations: '[{"key":"agentobs.io/real-node","operator":"Exists","effect":"NoSchedule"}]'
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: $dns_ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: agentobs-node-coredns, labels: {app.kubernetes.io/part-of: agentobs-node}}
rules:
  - {apiGroups: [""], resources: [services, namespaces, pods], verbs: [list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: agentobs-node-coredns, labels: {app.kubernetes.io/part-of: agentobs-node}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: agentobs-node-coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: $dns_ns}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: $dns_ns}
data:
  Corefile: |
    .:1053 {
        errors
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 5
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: $dns_ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: coredns}}
  template:
    metadata: {labels: {app: coredns}}
    spec:
      serviceAccountName: coredns
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: coredns
          image: registry.k8s.io/coredns/coredns:v1.14.7
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          ports: [{containerPort: 1053, protocol: UDP, name: dns}, {containerPort: 1053, protocol: TCP, name: dns-tcp}]
          readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: config, mountPath: /etc/coredns}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: $dns_ns}
spec:
  clusterIP: $dns_ip
  selector: {app: coredns}
  ports:
    - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
    - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
EOF
}

up() {
  bins
  local why; why=$(check) || { say "cannot run here: $why"; exit 3; }
  [ -f "$kubeconfig" ] && kubectl_ get --raw /readyz >/dev/null 2>&1 || { say "the cluster is not up (make cluster-up)"; exit 1; }
  if [ -f "$state/supervisor.pid" ] && kubectl_ get node "$node" >/dev/null 2>&1; then
    say "reusing the running node"; return 0
  fi
  down_quiet
  "$root/tools/ensure.sh" kubernetes >/dev/null
  mkdir -p "$state"
  local start d; start=$(date +%s)
  for d in /run/netns /run/containerd; do
    [ -d "$d" ] || { mkdir -p "$d"; touch "$state/made-${d//\//_}"; }
  done
  net_up
  pki
  write_configs
  start_daemons
  import_images
  say "waiting for the node to be Ready"
  local i
  for i in $(seq 1 120); do
    kubectl_ get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && break
    sleep 1
  done
  kubectl_ get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -q True \
    || { say "kubelet did not get Ready: $(tail -5 "$state/kubelet.log")"; exit 1; }
  dns_up
  kubectl_ -n "$dns_ns" rollout status deploy/coredns --timeout=120s >&2
  say "ready in $(( $(date +%s) - start ))s"
}

down_quiet() {
  if [ -f "$kubeconfig" ] && kubectl_ get --raw /readyz >/dev/null 2>&1; then
    kubectl_ delete namespace "$dns_ns" --wait=false --ignore-not-found >/dev/null 2>&1 || true
    kubectl_ delete clusterrole,clusterrolebinding agentobs-node-coredns --ignore-not-found >/dev/null 2>&1 || true
    kubectl_ delete node "$node" --ignore-not-found >/dev/null 2>&1 || true
  fi
  [ -f "$state/supervisor.pid" ] && kill -9 "$(cat "$state/supervisor.pid")" 2>/dev/null || true
  local c
  for c in "${cgroups[@]}"; do cgroup_empty_and_remove "$c"; done
  net_down
  # `ip netns add` makes /run/netns a bind mount of itself; with no namespace left in it, undo that.
  if grep -q " /run/netns " /proc/self/mounts && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
  fi
  # The mount points run.sh made private (empty on the host; removed only if we made them).
  local d
  for d in /run/containerd /run/netns; do
    [ -f "$state/made-${d//\//_}" ] && rmdir "$d" 2>/dev/null || true
  done
  # Mounts made in the node's private mount namespace went with its last process; any left in
  # the host's (none expected) are lazily detached before the state goes.
  if [ -d "$state" ]; then
    grep -F " $state" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$state" 2>/dev/null || { sleep 1; rm -rf "$state"; }
  fi
}

leftovers() {  # what of the node is still on this machine; exit 1 when anything is
  local found=()
  ip netns list 2>/dev/null | grep -q "^$netns\b" && found+=("network namespace $netns")
  ip link show "$host_if" >/dev/null 2>&1 && found+=("link $host_if")
  ip route | grep -qE "^($pod_cidr|$service_cidr) via $node_ip" && found+=("routes via $node_ip")
  compgen -G "/sys/fs/cgroup/*/agentobs-node*" >/dev/null && found+=("cgroups agentobs-node*")
  grep -qF " $state" /proc/self/mounts && found+=("mounts under $state")
  pgrep -f "$state/" >/dev/null && found+=("processes of $state: $(pgrep -f "$state/" | tr '\n' ' ')")
  compgen -G "/run/netns/cni-*" >/dev/null && found+=("pod network namespaces in /run/netns")
  compgen -G "/run/containerd/s/*" >/dev/null && found+=("shim sockets in /run/containerd/s")
  iptables-save 2>/dev/null | grep -q "KUBE-" && found+=("KUBE- iptables rules on the host")
  ip link show aobs0 >/dev/null 2>&1 && found+=("bridge aobs0 on the host")
  [ -e "$state" ] && found+=("$state")
  grep -q " /run/netns " /proc/self/mounts && [ -z "$(ls -A /run/netns 2>/dev/null)" ] && found+=("the /run/netns mount")
  if [ ${#found[@]} -gt 0 ]; then printf '%s\n' "${found[@]}"; return 1; fi
  return 0
}


down() {
  bins
  down_quiet
  say "stopped"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  check) check ;;
  leftovers) leftovers ;;
  *) echo "usage: hack/node.sh up|down|check|leftovers" >&2; exit 2 ;;
esac
