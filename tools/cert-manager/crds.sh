#!/usr/bin/env bash
# Prints the directory holding the CustomResourceDefinitions of the cert-manager release pinned in
# go.mod (deploy/crds of the module, fetched through the Go module proxy into the module cache).
#
#   tools/cert-manager/crds.sh
#
# GOTOOLCHAIN=local and -mod=readonly: the pinned go.sum is checked, nothing is upgraded. Progress
# and errors go to stderr; stdout carries only the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
command -v go >/dev/null || { echo "crds.sh: Go is needed to fetch the cert-manager module" >&2; exit 1; }
module=$(awk '/^require /{print $2; exit}' "$here/go.mod")
dir=$(cd "$here" && go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -d "$dir/deploy/crds" ] || { echo "crds.sh: no deploy/crds in $module ($dir)" >&2; exit 1; }
echo "$dir/deploy/crds"
