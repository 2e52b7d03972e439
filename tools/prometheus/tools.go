//go:build tools

// Package tools pins Prometheus at the release the operator deploys (module v0.305.0 is
// Prometheus v3.5.0). promtool checks the generated configuration, web configuration and alert
// rules in the component tests (Debian's promtool is built without Kubernetes service discovery
// and cannot check a configuration that uses it); prometheus itself runs in the real node's image.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
