#!/usr/bin/env bash
# Builds NVIDIA's mock NVML (github.com/NVIDIA/k8s-test-infra, pkg/gpu/mocknvml) as the shared library
# libnvidia-ml.so.1, from the commit pinned in tools/mocknvml/go.mod, with cgo, into a cache outside the
# git tree keyed on that pin, go.sum, the Go version and these scripts:
#
#   ${TESSERA_MOCKNVML_CACHE:-$HOME/.cache/tessera/mocknvml}/<key>/lib/libnvidia-ml.so.1
#   ${TESSERA_MOCKNVML_CACHE:-$HOME/.cache/tessera/mocknvml}/<key>/configs/mock-nvml-config-*.yaml
#
# (NVIDIA's GPU profiles, copied from the same commit). A process finds the mock where the real library
# would be: LD_LIBRARY_PATH=<key>/lib, MOCK_NVML_CONFIG=<a profile>. Prints the folder on stdout (and
# nothing else); a second run finds it at once; progress goes to stderr. Exit 3 when Go or a C compiler
# is missing, 5 when the source cannot be had.
#
# The source: the Go module proxy, where it serves the pinned pseudo-version (proxy.golang.org answers 403
# for this module here); else TESSERA_MOCKNVML_SRC, a git repository of github.com/NVIDIA/k8s-test-infra
# that holds the pinned commit. The dependencies (go-nvml and two YAML modules) come from the module proxy.
#
#   bash scripts/build-mocknvml.sh --find    prints the folder if it is built, else exits 4 (builds nothing)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[tessera-mocknvml] %s\n' "$*" >&2; }
# shellcheck source=lib/pinned-build.sh
. "$root/scripts/lib/pinned-build.sh"

module=github.com/NVIDIA/k8s-test-infra
commit=3b2b865d91b1844baa9feeca2820d2fab65414c7   # must match the pseudo-version in tools/mocknvml/go.mod
version=v0.0.0-20260821154203-3b2b865d91b1
grep -q "$module $version" "$root/tools/mocknvml/go.mod" || { say "tools/mocknvml/go.mod does not pin $version"; exit 2; }

if ! command -v go >/dev/null 2>&1 || ! command -v "${CC:-gcc}" >/dev/null 2>&1; then
    say "no Go toolchain or C compiler on PATH: cannot build NVIDIA's mock NVML (cgo)"
    exit 3
fi
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=1

cache="${TESSERA_MOCKNVML_CACHE:-$HOME/.cache/tessera/mocknvml}"
pinned_begin "$root/tools/mocknvml" "$cache" "${BASH_SOURCE[0]}" "${1:-}"
pinned_source "$module" "$version" "$commit" "${TESSERA_MOCKNVML_SRC:-}" "$work/mod/src" || { rm -rf "$work"; exit 5; }
mkdir -p "$work/lib" "$work/configs"

# What the mock's own Makefile passes: the real library's unversioned names as aliases of the versioned
# ones (nvmlDeviceGetPciInfo -> _v3, ...) and the soname libnvidia-ml.so.1 that dlopen asks for. No padding
# (its 14 MiB only imitates the real file's size).
aliases=""
for pair in DeviceGetPciInfo=DeviceGetPciInfo_v3 DeviceGetHandleByPciBusId=DeviceGetHandleByPciBusId_v2 \
            DeviceGetNvLinkRemotePciInfo=DeviceGetNvLinkRemotePciInfo_v2 DeviceRemoveGpu=DeviceRemoveGpu_v2 \
            DeviceGetGridLicensableFeatures=DeviceGetGridLicensableFeatures_v4 EventSetWait=EventSetWait_v2 \
            DeviceGetAttributes=DeviceGetAttributes_v2 ComputeInstanceGetInfo=ComputeInstanceGetInfo_v2 \
            DeviceGetComputeRunningProcesses=DeviceGetComputeRunningProcesses_v3 \
            DeviceGetGraphicsRunningProcesses=DeviceGetGraphicsRunningProcesses_v3 \
            DeviceGetMPSComputeRunningProcesses=DeviceGetMPSComputeRunningProcesses_v3 \
            DeviceGetGpuInstancePossiblePlacements=DeviceGetGpuInstancePossiblePlacements_v2 \
            VgpuInstanceGetLicenseInfo=VgpuInstanceGetLicenseInfo_v2 DeviceGetDriverModel=DeviceGetDriverModel_v2; do
    aliases="$aliases -Wl,--defsym,nvml${pair%%=*}=nvml${pair#*=}"
done

started=$SECONDS
say "building NVIDIA's mock NVML ($commit) into $out; 25 s warm on this 2-core machine, about a minute cold"
(
    cd "$work/mod"
    CGO_LDFLAGS_ALLOW='--defsym|-soname' CGO_LDFLAGS="$aliases -Wl,-soname,libnvidia-ml.so.1" \
        go build -tags nopadding -buildmode=c-shared -o "$work/lib/libnvidia-ml.so.1" \
        "$module/pkg/gpu/mocknvml/bridge" 2> "$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
)
rm -f "$work/lib/libnvidia-ml.so.h"
ln -s libnvidia-ml.so.1 "$work/lib/libnvidia-ml.so"
cp "$work/mod/src/pkg/gpu/mocknvml/configs/"*.yaml "$work/configs/"
rm -rf "$work/mod" "$work/build.log"
say "mock NVML built in $((SECONDS - started)) s; $(du -sh "$work/lib/libnvidia-ml.so.1" | cut -f1)"
pinned_finish "$work" "$out" "$cache"
echo "$out"
