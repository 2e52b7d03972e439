//go:build tools

// Package tools pins CoreDNS, the cluster DNS of the real node (hack/node.sh): pods resolve the
// stack's Service names through it, as on any cluster.
package tools

import (
	_ "github.com/coredns/coredns"
)
