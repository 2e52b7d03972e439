//go:build tools

// Package tools pins the Jaeger v2 program (an OTLP receiver with a query API) that the SDK's
// tests export spans to and whose config validation checks the rendered collector and query configs.
// The Go module keeps v1.x tags: v1.76.0 is the source of Jaeger v2.13.0. Some of its dependencies have
// no entry in the checksum database reachable here, so go.sum was made once with GOSUMDB=off; builds
// verify every download against this go.sum.
package tools

import (
	_ "github.com/jaegertracing/jaeger/cmd/jaeger"
)
