//go:build tools

// Package tools pins the etcd programs that the project's tests run.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
