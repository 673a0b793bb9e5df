# Shared by the scripts that build a peer or a test double from a pinned Go module that the module
# proxy may refuse (scripts/build-gpushare.sh, scripts/build-mocknvml.sh): the cache folder keyed on the
# pin, one build per machine at a time, and the pinned source from the proxy or from a git repository.
# Sourced, not run. Each function reports on stderr; the caller prints the folder on stdout.

# pinned_begin TOOL_DIR CACHE SCRIPT [--find]: sets key, out (CACHE/<key>, the finished build) and work
# (where to build, with TOOL_DIR's go.mod and go.sum copied to work/mod). The key hashes the pin, go.sum,
# SCRIPT, this file and the Go version. Prints out and exits 0 when it is built; with --find exits 4 when
# it is not; else takes the lock (a second run waits, then finds the first one's build).
pinned_begin() {
    local tool="$1" cache="$2" script="$3"
    key="$( { cat "$tool/go.mod" "$tool/go.sum" "$script" "${BASH_SOURCE[0]}"; go version; } | sha256sum | cut -c1-16)"
    out="$cache/$key"
    work="$cache/.partial-$key"
    pinned_cache_hit "$out" && exit 0
    [ "${4:-}" = --find ] && exit 4
    pinned_lock "$cache"
    pinned_cache_hit "$out" && exit 0
    rm -rf "$work"
    mkdir -p "$work/mod"
    cp "$tool/go.mod" "$tool/go.sum" "$work/mod/"
}

# pinned_cache_hit OUT: true (and prints OUT) when a finished build is there.
pinned_cache_hit() {
    if [ -f "$1/.complete" ]; then
        echo "$1"
        return 0
    fi
    return 1
}

# pinned_lock CACHE: holds CACHE/.build.lock on fd 9 until the caller exits (two runs build once).
pinned_lock() {
    mkdir -p "$1"
    exec 9>"$1/.build.lock"
    flock 9
}

# pinned_source MODULE VERSION COMMIT SRC_REPO DEST: the module's source at the pinned commit into DEST,
# from the module proxy where it serves VERSION, else from the git repository SRC_REPO (a clone, bare or
# not, that holds COMMIT). Returns 5 when neither has it.
pinned_source() {
    local module="$1" version="$2" commit="$3" repo="$4" dest="$5" probe dir
    probe="$(mktemp -d)"
    mkdir -p "$dest"
    if dir="$(cd "$probe" && go mod init tessera.local/probe >/dev/null 2>&1 \
              && GOFLAGS=-mod=mod go mod download -json "$module@$version" 2>/dev/null \
              | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" && [ -n "$dir" ] && [ -d "$dir" ]; then
        say "source of $module@$version from the module proxy"
        cp -r "$dir"/. "$dest/"
        chmod -R u+w "$dest"
    elif [ -n "$repo" ] && git -C "$repo" cat-file -e "$commit^{commit}" 2>/dev/null; then
        say "source of $module at $commit from the git repository $repo"
        git -C "$repo" archive "$commit" | tar -x -C "$dest"
    else
        say "cannot get the source of $module@$version: the module proxy does not serve it here" \
            "and '${repo}' is no git repository holding $commit"
        rm -rf "$probe"
        return 5
    fi
    rm -rf "$probe"
}

# pinned_finish WORK OUT CACHE: marks WORK complete, moves it to OUT and removes older builds in CACHE.
pinned_finish() {
    local work="$1" out="$2" cache="$3" old
    touch "$work/.complete"
    rm -rf "$out"
    mv "$work" "$out"
    for old in "$cache"/*/ "$cache"/.partial-*/; do
        [ -d "$old" ] && [ "${old%/}" != "$out" ] && rm -rf "$old" && say "removed an older build: ${old%/}"
    done
    return 0
}
