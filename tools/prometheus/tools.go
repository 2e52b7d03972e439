//go:build tools

// Package tools pins promtool from the Prometheus release the operator deploys (module
// v0.305.0 is Prometheus v3.5.0): the component tests check the generated configuration, web
// configuration and alert rules with it. Debian's promtool is built without Kubernetes service
// discovery and cannot check a configuration that uses it.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
