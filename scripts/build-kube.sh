#!/usr/bin/env bash
# Builds the real Kubernetes that the tests' real tier starts (tests/real/): the control plane and a
# node (kubelet, containerd with its runc shim, and the pod sandbox's pause; runc is Debian's), from
# the upstream Go modules pinned in tools/kube/go.mod (Kubernetes), tools/etcd/go.mod (etcd),
# tools/containerd/go.mod (containerd) and tools/pause (ours), into a cache outside the git tree keyed
# on those pins, the Go version and this script:
#
#   ${TESSERA_KUBE_CACHE:-$HOME/.cache/tessera/kube}/<key>/{etcd,kube-apiserver,kube-controller-manager,
#       kube-scheduler,kubectl,kubelet,containerd,containerd-shim-runc-v2,ctr,pause}
#
# Prints the folder on stdout (and nothing else), so a caller can do  bin="$(bash scripts/build-kube.sh)".
# A second run finds the folder and returns at once. Progress goes to stderr: what is being built
# and how long it took. Exit 3 when Go is missing (the caller then skips the real tier with that reason).
#
#   bash scripts/build-kube.sh --find    prints the folder if it is built, else exits 4 (builds nothing)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[tessera-kube] %s\n' "$*" >&2; }

kube_version=v1.37.2
kube_binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
containerd_binaries=(containerd containerd-shim-runc-v2 ctr)
build_date=2026-11-20T00:00:00Z   # fixed, so that the same pins give the same binaries

if ! command -v go >/dev/null 2>&1; then
    say "no Go toolchain on PATH: cannot build the real control plane"
    exit 3
fi
# No VCS stamp: tools/ sits inside this repository, and the version comes from -ldflags below.
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

key="$( { cat "$root"/tools/kube/go.mod "$root"/tools/kube/go.sum "$root"/tools/etcd/go.mod \
            "$root"/tools/etcd/go.sum "$root"/tools/containerd/go.mod "$root"/tools/containerd/go.sum \
            "$root"/tools/pause/go.mod "$root"/tools/pause/main.go "${BASH_SOURCE[0]}"; go version; } \
          | sha256sum | cut -c1-16)"
cache="${TESSERA_KUBE_CACHE:-$HOME/.cache/tessera/kube}"
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

stamp=""
minor="${kube_version#v1.}"; minor="${minor%%.*}"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

# go_build <module folder under tools/> <extra ldflags> <package prefix> <command>...: one go build of
# the module's commands into the build folder.
go_build() {
    local folder=$1 ldflags=$2 prefix=$3
    shift 3
    local pkgs=()
    for b in "$@"; do pkgs+=("$prefix$b"); done
    (cd "$root/tools/$folder" && go build -trimpath -ldflags "-s -w$ldflags" -o "$work/" "${pkgs[@]}")
}

started=$SECONDS
say "building Kubernetes $kube_version (${kube_binaries[*]}), etcd and containerd from the Go module proxy into $out; a cold build took 9 min on 2 cores here (modules downloaded included), later runs reuse it"
(
    cd "$root/tools/etcd"
    go build -trimpath -ldflags "-s -w" -o "$work/etcd" go.etcd.io/etcd/server/v3
)
say "etcd built in $((SECONDS - started)) s"
t=$SECONDS
go_build kube "$stamp" k8s.io/kubernetes/cmd/ "${kube_binaries[@]}"
say "Kubernetes built in $((SECONDS - t)) s"
t=$SECONDS
go_build containerd "" github.com/containerd/containerd/v2/cmd/ "${containerd_binaries[@]}"
(cd "$root/tools/pause" && go build -trimpath -ldflags "-s -w" -o "$work/pause" .)
size="$(du -sh "$work" | cut -f1)"
say "containerd and pause built in $((SECONDS - t)) s, $((SECONDS - started)) s in all; $size of binaries"
touch "$work/.complete"
rm -rf "$out"
mv "$work" "$out"
# Builds for other pins (an older checkout's) are 400 MB each: keep this one only.
for old in "$cache"/*/ "$cache"/.partial-*/; do
    [ -d "$old" ] && [ "${old%/}" != "$out" ] && rm -rf "$old" && say "removed an older build: ${old%/}"
done
echo "$out"
