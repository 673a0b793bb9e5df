#!/usr/bin/env bash
# Builds HAMi's scheduler extender (Project-HAMi/HAMi, cmd/scheduler), the second peer bench/compare.py
# runs beside Tessera's extender, from the commit pinned in tools/hami/go.mod, into a cache outside the
# git tree keyed on that pin, go.sum, the Go version and this script:
#
#   ${TESSERA_HAMI_CACHE:-$HOME/.cache/tessera/hami}/<key>/hami-scheduler
#
# Prints the folder on stdout (and nothing else), so a caller can do  bin="$(bash scripts/build-hami.sh)".
# A second run finds the folder and returns at once. Progress goes to stderr. Same conventions as
# scripts/build-gpushare.sh; exit 3 when Go or a C compiler is missing, 5 when the source cannot be had.
#
# The source: the Go module proxy, where it serves the pinned pseudo-version (here it answers 403 for
# github.com/Project-HAMi/HAMi); else TESSERA_HAMI_SRC, a git repository of github.com/Project-HAMi/HAMi
# that holds the pinned commit (a clone, bare or not). The dependencies always come from the module proxy.
# Only cmd/scheduler is built. With cgo (CGO_ENABLED=1, a C compiler needed): HAMi's pkg/device/nvidia
# imports github.com/NVIDIA/go-nvml/pkg/nvml, whose types are cgo-generated (with CGO_ENABLED=0 that package
# does not compile: "undefined: Return"); go-nvml opens libnvidia-ml with dlopen when called, which the
# scheduler never does, so the binary runs on a machine without a driver (linked to libc only).
#
# A cold build (empty Go build cache, the dependencies already in the module cache: fetching them took
# 17 s more) took 3.9 min on this 2-core machine while it was busy (2026-12-08); later runs reuse it.
#
#   bash scripts/build-hami.sh --find    prints the folder if it is built, else exits 4 (builds nothing)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[tessera-hami] %s\n' "$*" >&2; }
# shellcheck source=lib/pinned-build.sh
. "$root/scripts/lib/pinned-build.sh"

module=github.com/Project-HAMi/HAMi
commit=4707fb02c91c545bc7343ce26dba4c32919f9a3e   # must match the pseudo-version in tools/hami/go.mod
version=v0.0.0-20260821062039-4707fb02c91c
grep -q "$module $version" "$root/tools/hami/go.mod" || { say "tools/hami/go.mod does not pin $version"; exit 2; }

if ! command -v go >/dev/null 2>&1 || ! command -v "${CC:-gcc}" >/dev/null 2>&1; then
    say "no Go toolchain or no C compiler (${CC:-gcc}) on PATH: cannot build HAMi's scheduler (it needs cgo)"
    exit 3
fi
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=1 CGO_CFLAGS="-O2 -g -w"

cache="${TESSERA_HAMI_CACHE:-$HOME/.cache/tessera/hami}"
pinned_begin "$root/tools/hami" "$cache" "${BASH_SOURCE[0]}" "${1:-}"
pinned_source "$module" "$version" "$commit" "${TESSERA_HAMI_SRC:-}" "$work/mod/src" || { rm -rf "$work"; exit 5; }

started=$SECONDS
say "building HAMi's scheduler ($commit) into $out; a cold build takes about 4 min on a busy 2-core machine, later runs reuse it"
(
    cd "$work/mod"
    go build -trimpath -ldflags "-s -w" -o "$work/hami-scheduler" "$module/cmd/scheduler"
)
rm -rf "$work/mod"
say "HAMi's scheduler built in $((SECONDS - started)) s; $(du -sh "$work/hami-scheduler" | cut -f1)"
pinned_finish "$work" "$out" "$cache"
echo "$out"
