#!/usr/bin/env bash
# Builds Helm, which the chart's tests use (tests/deploy/, tests/real/), from the upstream Go module
# pinned in tools/helm/go.mod, into a cache outside the git tree keyed on that pin, the Go version
# and this script:
#
#   ${TESSERA_HELM_CACHE:-$HOME/.cache/tessera/helm}/<key>/helm
#
# Prints the folder on stdout (and nothing else), so a caller can do  bin="$(bash scripts/build-helm.sh)".
# A second run finds the folder and returns at once. Progress goes to stderr. Exit 3 when Go is
# missing (the caller then skips the chart's tests with that reason). Same conventions as
# scripts/build-kube.sh.
#
#   bash scripts/build-helm.sh --find    prints the folder if it is built, else exits 4 (builds nothing)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[tessera-helm] %s\n' "$*" >&2; }

helm_version=v4.3.2   # must match tools/helm/go.mod

if ! command -v go >/dev/null 2>&1; then
    say "no Go toolchain on PATH: cannot build helm"
    exit 3
fi
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

key="$( { cat "$root"/tools/helm/go.mod "$root"/tools/helm/go.sum "${BASH_SOURCE[0]}"; go version; } \
          | sha256sum | cut -c1-16)"
cache="${TESSERA_HELM_CACHE:-$HOME/.cache/tessera/helm}"
out="$cache/$key"
if [ -f "$out/.complete" ]; then
    echo "$out"
    exit 0
fi
[ "${1:-}" = --find ] && exit 4

mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9   # two test runs on one machine build once
if [ -f "$out/.complete" ]; then
    echo "$out"
    exit 0
fi
work="$cache/.partial-$key"
rm -rf "$work"
mkdir -p "$work"

started=$SECONDS
say "building Helm $helm_version from the Go module proxy into $out; a cold build took 9 min on this 2-core machine while it was busy (5 CPU-minutes; modules already downloaded), later runs reuse it"
(
    cd "$root/tools/helm"
    go build -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
        -o "$work/helm" helm.sh/helm/v4/cmd/helm
)
say "Helm built in $((SECONDS - started)) s; $(du -sh "$work/helm" | cut -f1)"
touch "$work/.complete"
rm -rf "$out"
mv "$work" "$out"
for old in "$cache"/*/ "$cache"/.partial-*/; do
    [ -d "$old" ] && [ "${old%/}" != "$out" ] && rm -rf "$old" && say "removed an older build: ${old%/}"
done
echo "$out"
