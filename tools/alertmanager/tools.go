//go:build tools

// Package tools pins Alertmanager at the release the operator deploys by default (v0.28.1): the
// real-node tier runs it in the image the project assembles (hack/images.sh).
package tools

import (
	_ "github.com/prometheus/alertmanager/cmd/alertmanager"
)
