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

module=github.com/AliyunContainerService/gpushare-scheduler-extender
commit=c0b61411cddabd1b19500878ab355afeeae5589e   # must match the pseudo-version in tools/gpushare/go.mod
version=v0.0.0-20230316121447-c0b61411cdda
grep -q "$module $version" "$root/tools/gpushare/go.mod" || { say "tools/gpushare/go.mod does not pin $version"; exit 2; }

if ! command -v go >/dev/null 2>&1; then
    say "no Go toolchain on PATH: cannot build gpushare-scheduler-extender"
    exit 3
fi
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

key="$( { cat "$root"/tools/gpushare/go.mod "$root"/tools/gpushare/go.sum "${BASH_SOURCE[0]}"; go version; } \
          | sha256sum | cut -c1-16)"
cache="${TESSERA_GPUSHARE_CACHE:-$HOME/.cache/tessera/gpushare}"
out="$cache/$key"
if [ -f "$out/.complete" ]; then
    echo "$out"
    exit 0
fi
[ "${1:-}" = --find ] && exit 4

mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9   # two runs on one machine build once
if [ -f "$out/.complete" ]; then
    echo "$out"
    exit 0
fi
work="$cache/.partial-$key"
rm -rf "$work"
mkdir -p "$work/mod/src"
cp "$root/tools/gpushare/go.mod" "$root/tools/gpushare/go.sum" "$work/mod/"

# The source of the pinned commit, into $work/mod/src (go.mod's replace points there).
probe="$work/probe"
mkdir -p "$probe"
if dir="$(cd "$probe" && go mod init tessera.local/probe >/dev/null 2>&1 \
          && GOFLAGS=-mod=mod go mod download -json "$module@$version" 2>/dev/null \
          | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" && [ -n "$dir" ] && [ -d "$dir" ]; then
    say "source of $module@$version from the module proxy"
    cp -r "$dir"/. "$work/mod/src/"
    chmod -R u+w "$work/mod/src"
elif [ -n "${TESSERA_GPUSHARE_SRC:-}" ] && git -C "$TESSERA_GPUSHARE_SRC" cat-file -e "$commit^{commit}" 2>/dev/null; then
    say "source of $module at $commit from the git repository $TESSERA_GPUSHARE_SRC"
    git -C "$TESSERA_GPUSHARE_SRC" archive "$commit" | tar -x -C "$work/mod/src"
else
    say "cannot get the source of $module@$version: the module proxy does not serve it here" \
        "and TESSERA_GPUSHARE_SRC ('${TESSERA_GPUSHARE_SRC:-}') is no git repository holding $commit"
    rm -rf "$work"
    exit 5
fi
rm -rf "$probe"

started=$SECONDS
say "building gpushare-scheduler-extender ($commit) into $out; a cold build took 3.5 min on this 2-core machine while it was busy (dependencies downloaded), later runs reuse it"
(
    cd "$work/mod"
    go build -trimpath -ldflags "-s -w" -o "$work/gpushare-sche-extender" "$module/cmd"
)
rm -rf "$work/mod"
say "gpushare-scheduler-extender built in $((SECONDS - started)) s; $(du -sh "$work/gpushare-sche-extender" | cut -f1)"
touch "$work/.complete"
rm -rf "$out"
mv "$work" "$out"
for old in "$cache"/*/ "$cache"/.partial-*/; do
    [ -d "$old" ] && [ "${old%/}" != "$out" ] && rm -rf "$old" && say "removed an older build: ${old%/}"
done
echo "$out"
