#!/usr/bin/env bash
# Builds Alibaba's gpushare-scheduler-extender, the peer bench/compare.py runs beside Tessera's extender,
# from the commit pinned in tools/gpushare/go.mod, into a cache outside the git tree keyed on that pin,
# go.sum, the Go version and this script:
#
#   ${TESSERA_GPUSHARE_CACHE:-$HOME/.cache/tessera/gpushare}/<key>/gpushare-sche-extender
#
# Prints the folder on stdout (and nothing else), so a caller can do  bin="$(bash scripts/build-gpushare.sh)".
# A second run finds the folder and returns at once. Progress goes to stderr. Same conventions as
# scripts/build-helm.sh; exit 3 when Go is missing, 5 when the source cannot be had.
#
# The source: the Go module proxy, where it serves the pinned pseudo-version; else
# TESSERA_GPUSHARE_SRC, a git repository of github.com/AliyunContainerService/gpushare-scheduler-extender
# that holds the pinned commit (a clone, bare or not). The dependencies always come from the module proxy.
#
#   bash scripts/build-gpushare.sh --find    prints the folder if it is built, else exits 4 (builds nothing)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[tessera-gpushare] %s\n' "$*" >&2; }
# shellcheck source=lib/pinned-build.sh
. "$root/scripts/lib/pinned-build.sh"

module=github.com/AliyunContainerService/gpushare-scheduler-extender
commit=c0b61411cddabd1b19500878ab355afeeae5589e   # must match the pseudo-version in tools/gpushare/go.mod
version=v0.0.0-20230316121447-c0b61411cdda
grep -q "$module $version" "$root/tools/gpushare/go.mod" || { say "tools/gpushare/go.mod does not pin $version"; exit 2; }

if ! command -v go >/dev/null 2>&1; then
    say "no Go toolchain on PATH: cannot build gpushare-scheduler-extender"
    exit 3
fi
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

cache="${TESSERA_GPUSHARE_CACHE:-$HOME/.cache/tessera/gpushare}"
pinned_begin "$root/tools/gpushare" "$cache" "${BASH_SOURCE[0]}" "${1:-}"
pinned_source "$module" "$version" "$commit" "${TESSERA_GPUSHARE_SRC:-}" "$work/mod/src" || { rm -rf "$work"; exit 5; }

started=$SECONDS
say "building gpushare-scheduler-extender ($commit) into $out; a cold build took 3.5 min on this 2-core machine while it was busy (dependencies downloaded), later runs reuse it"
(
    cd "$work/mod"
    go build -trimpath -ldflags "-s -w" -o "$work/gpushare-sche-extender" "$module/cmd"
)
rm -rf "$work/mod"
say "gpushare-scheduler-extender built in $((SECONDS - started)) s; $(du -sh "$work/gpushare-sche-extender" | cut -f1)"
pinned_finish "$work" "$out" "$cache"
echo "$out"
