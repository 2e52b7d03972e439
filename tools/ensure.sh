#!/usr/bin/env bash
# Makes the pinned Go programs that the local cluster and the tests run available, and prints the
# directory that holds them.
#
#   tools/ensure.sh TOOL      TOOL is a directory under tools/ with a go.mod and a tools.go
#
# The go.mod of each tool pins its version; tools.go lists the programs to build. Programs land in
# ${XDG_CACHE_HOME:-$HOME/.cache}/agentobs/<tool>-<version>/, outside the clone, so a fresh clone
# (CI) reuses them. A program already on PATH that reports the pinned version is linked instead of
# built. Builds use GOTOOLCHAIN=local so a module needing a newer Go fails fast instead of fetching
# a toolchain. Progress goes to stderr; stdout carries only the directory.
set -euo pipefail

tool=${1:?usage: tools/ensure.sh TOOL}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
moddir=$here/$tool
[ -f "$moddir/go.mod" ] || { echo "ensure.sh: no tool '$tool' (expected $moddir/go.mod)" >&2; exit 2; }

export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
main_module=$(awk '/^require /{print $2; exit}' "$moddir/go.mod")
version=$(awk '/^require /{print $3; exit}' "$moddir/go.mod")
packages=$(sed -n 's/^[[:space:]]*_ "\(.*\)"$/\1/p' "$moddir/tools.go")

cache=${XDG_CACHE_HOME:-$HOME/.cache}/agentobs/$tool-$version
prog_name() {  # the program a package builds: its last path element, or the binary's own name
  case $1 in
    go.etcd.io/etcd/server/v3) echo etcd ;;
    *) basename "$1" ;;
  esac
}

# What a program prints about its version, for matching a copy found on PATH.
reports_version() {
  local bin=$1 want=${version#v}
  local out
  case $(basename "$bin") in
    kubectl) out=$("$bin" version --client 2>/dev/null || true) ;;
    helm) out=$("$bin" version --short 2>/dev/null || true) ;;
    *) out=$("$bin" --version 2>/dev/null || "$bin" version 2>/dev/null || true) ;;
  esac
  grep -Eq "(^|[^0-9.])v?${want//./\\.}([^0-9.]|$)" <<<"$out" && ! grep -q dispatcher <<<"$out"
}

ldflags_for() {
  local short=${version#v} major minor
  major=${short%%.*}; minor=${short#*.}; minor=${minor%%.*}
  case $tool in
    kubernetes)
      local v=k8s.io/component-base/version
      echo "-s -w -X $v.gitVersion=$version -X $v.gitMajor=$major -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z" ;;
    kwok) echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$short" ;;
    helm) echo "-s -w -X helm.sh/helm/v3/internal/version.version=$version" ;;
    jaeger) echo "-s -w -X github.com/jaegertracing/jaeger/pkg/version.latestVersion=$version" ;;
    *) echo "-s -w" ;;
  esac
}

go_output_name() {  # go build names a program after its path, skipping a /vN major-version suffix
  local last; last=$(basename "$1")
  if [[ $last =~ ^v[0-9]+$ ]]; then basename "$(dirname "$1")"; else echo "$last"; fi
}

complete() { for p in $packages; do [ -x "$cache/$(prog_name "$p")" ] || return 1; done; }

if complete; then echo "$cache"; exit 0; fi

mkdir -p "$cache"
# One build per tool at a time: a second caller (another clone, a test fixture) waits for the
# first and then finds the programs in place.
exec 9>"$cache/.lock"
flock 9
if complete; then echo "$cache"; exit 0; fi
todo=()
for p in $packages; do
  name=$(prog_name "$p")
  [ -x "$cache/$name" ] && continue
  found=$(command -v "$name" 2>/dev/null || true)
  if [ -n "$found" ] && reports_version "$found"; then
    ln -sf "$found" "$cache/$name"
    echo "ensure.sh: using $found ($tool $version) from PATH" >&2
  else
    todo+=("$p")
  fi
done

if [ ${#todo[@]} -gt 0 ]; then
  command -v go >/dev/null || { echo "ensure.sh: Go is needed to build $tool $version" >&2; exit 1; }
  echo "ensure.sh: building $tool $version into $cache; a cold build takes minutes" >&2
  start=$(date +%s)
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$moddir" && go build -trimpath -ldflags "$(ldflags_for)" -o "$tmp/" "${todo[@]}")
  for p in "${todo[@]}"; do
    built=$tmp/$(go_output_name "$p")
    mv "$built" "$cache/$(prog_name "$p")"
  done
  echo "ensure.sh: built $tool $version in $(( $(date +%s) - start ))s" >&2
fi
complete || { echo "ensure.sh: $tool is incomplete in $cache" >&2; exit 1; }
echo "$cache"
