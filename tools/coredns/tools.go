//go:build tools

// Package tools pins CoreDNS, the cluster DNS of the real node (hack/node.sh): pods resolve the
// stack's Service names through it, as on any cluster. ensure.sh builds ./cmd/coredns, CoreDNS with
// the few plugins it needs.
package tools

import (
	_ "agentobs.io/tools/coredns/cmd/coredns"
)
