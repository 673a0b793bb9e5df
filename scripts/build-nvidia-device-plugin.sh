#!/usr/bin/env bash
# Builds NVIDIA's device plugin (github.com/NVIDIA/k8s-device-plugin, cmd/nvidia-device-plugin), the peer
# bench/compare.py runs beside Tessera's device plugin (--only nvidia-plugin), at the version pinned in
# tools/nvidia-device-plugin/go.mod, with cgo, into a cache outside the git tree keyed on that pin, go.sum,
# the Go version and these scripts:
#
#   ${TESSERA_NVIDIA_DP_CACHE:-$HOME/.cache/tessera/nvidia-device-plugin}/<key>/nvidia-device-plugin
#
# go-nvml dlopens libnvidia-ml.so.1 when the plugin starts, so the build needs no NVIDIA library; on a
# machine without a GPU the plugin runs on NVIDIA's mock NVML (scripts/build-mocknvml.sh). Prints the
# folder on stdout (and nothing else); a second run finds it at once; progress goes to stderr. Exit 3 when
# Go or a C compiler is missing, 5 when the module cannot be had. A cold build (empty module and build
# caches: every dependency downloaded and compiled) took 2.5 min on this 2-core machine while it was busy;
# 81 s with the dependencies already downloaded; seconds once Go's build cache holds them.
#
# The source and its dependencies: the Go module proxy, which serves this module (v0.17.4).
#
#   bash scripts/build-nvidia-device-plugin.sh --find    prints the folder if it is built, else exits 4
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[tessera-nvidia-device-plugin] %s\n' "$*" >&2; }
# shellcheck source=lib/pinned-build.sh
. "$root/scripts/lib/pinned-build.sh"

module=github.com/NVIDIA/k8s-device-plugin
version=v0.17.4   # must match tools/nvidia-device-plugin/go.mod
grep -q "$module $version" "$root/tools/nvidia-device-plugin/go.mod" || {
    say "tools/nvidia-device-plugin/go.mod does not pin $version"; exit 2; }

for needed in go "${CC:-gcc}"; do   # cgo: the Go toolchain and a C compiler
    command -v "$needed" >/dev/null 2>&1 || { say "no $needed on PATH: cannot build NVIDIA's device plugin"; exit 3; }
done
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=1

cache="${TESSERA_NVIDIA_DP_CACHE:-$HOME/.cache/tessera/nvidia-device-plugin}"
pinned_begin "$root/tools/nvidia-device-plugin" "$cache" "${BASH_SOURCE[0]}" "${1:-}"

started=$SECONDS
say "building NVIDIA's device plugin $version into $out; a cold build took 2.5 min on this 2-core machine"
(
    cd "$work/mod"
    go mod download "$module" || { say "the module proxy does not serve $module@$version here"; exit 5; }
    go build -trimpath -ldflags "-s -w -X $module/internal/info.version=$version" \
        -o "$work/nvidia-device-plugin" "$module/cmd/nvidia-device-plugin" 2> "$work/build.log" \
        || { cat "$work/build.log" >&2; exit 1; }
) || { rc=$?; rm -rf "$work"; exit "$rc"; }
rm -rf "$work/mod" "$work/build.log"
say "NVIDIA's device plugin built in $((SECONDS - started)) s; $(du -sh "$work/nvidia-device-plugin" | cut -f1)"
pinned_finish "$work" "$out" "$cache"
echo "$out"
