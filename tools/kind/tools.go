//go:build tools

// Package tools pins kind, which `make e2e` uses to run the suite on a real cluster where Docker runs.
package tools

import (
	_ "sigs.k8s.io/kind"
)
