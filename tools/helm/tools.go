//go:build tools

// Package tools pins the helm programs that the project's tests run.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
