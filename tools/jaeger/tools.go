//go:build tools

// Package tools pins the Jaeger v2 program (an OTLP receiver with a query API) that the SDK's
// tests export spans to. The Go module keeps v1.x tags; v1.62.0 is the source of Jaeger v2.0.0-rc2.
package tools

import (
	_ "github.com/jaegertracing/jaeger/cmd/jaeger"
)
