#!/usr/bin/env bash
# The check of Tessera on a real NVIDIA GPU (issue 20): one command, under five minutes, report under $OUT.
#
# READ-ONLY ON THE CARD: it never changes MIG layout, clocks, compute mode, persistence or ECC, never
# resets the card, and stops every daemon it starts (the MPS control daemon: `quit`, then kill).
#
#   bash scripts/gpu-check.sh prepare   # on a machine with the package registry: the pure-python packages
#                                       # the check imports, into .gpucheck-deps/ (ignored by git; carried)
#   bash scripts/gpu-check.sh [ARGS]    # run it: python -m gpucheck --out "${OUT:-gpu-check-out}" ARGS
#                                       # (ARGS: --dry-run, --only SECTION..., see --help)
#
# With .gpucheck-deps/py present it runs with the machine's python3 (the lent GPU machine: its PyTorch or
# CuPy is what the MPS clients use) and PYTHONPATH set to this checkout plus .gpucheck-deps/py; without it,
# with .venv/bin/python where the checkout has a .venv (CPU machines). Without an NVIDIA driver every section says "not checked" and it exits 0;
# it exits 1 when a check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.gpucheck-deps"
# What the check imports beyond the standard library, at the versions the project's venv holds. grpcio,
# kubernetes and cryptography are not imported by the check. PyYAML's compiled part is dropped: its pure
# Python loader serves any Python 3. typing_extensions: structlog needs it on Python 3.10.
PACKAGES=(nvidia-ml-py structlog prometheus-client protobuf PyYAML typing_extensions)

pinned() {
    # "name==version" for each package, from the venv when there is one, else unpinned
    local py="$1" name version
    for name in "${PACKAGES[@]}"; do
        version="$("$py" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)"
        if [[ -n "$version" ]]; then echo "$name==$version"; else echo "$name"; fi
    done
}

prepare() {
    local py="${PYTHON:-}"
    [[ -z "$py" && -x "$ROOT/.venv/bin/python" ]] && py="$ROOT/.venv/bin/python"
    py="${py:-python3}"
    rm -rf "$DEPS"
    mkdir -p "$DEPS/py"
    mapfile -t wanted < <(pinned "$py")
    # protobuf: the abi3 wheel (CPython 3.9 on, one build for all); the others are pure Python
    "$py" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.10 --platform manylinux2014_x86_64 --implementation cp \
        --target "$DEPS/py" "${wanted[@]}"
    find "$DEPS/py" -name '_yaml*.so' -delete
    find "$DEPS/py" -depth -name '__pycache__' -type d -exec rm -rf {} +
    rm -rf "$DEPS/py/_yaml"
    printf '%s\n' "${wanted[@]}" > "$DEPS/packages.txt"
    echo "prepared $DEPS ($(du -sm "$DEPS" | cut -f1) MiB): ${wanted[*]}"
}

run_check() {
    cd "$ROOT"
    if [[ -x "$ROOT/.venv/bin/python" && ! -d "$DEPS/py" ]]; then
        exec env PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$ROOT/.venv/bin/python" -m gpucheck \
            --out "${OUT:-gpu-check-out}" "$@"
    fi
    if [[ ! -d "$DEPS/py" ]]; then
        echo "gpu-check: no .gpucheck-deps/py here: run 'bash scripts/gpu-check.sh prepare' where the registry is," \
             "then carry .gpucheck-deps" >&2
        exit 2
    fi
    exec env PYTHONPATH="$ROOT:$DEPS/py" python3 -m gpucheck --out "${OUT:-gpu-check-out}" "$@"
}

case "${1:-}" in
    prepare) prepare ;;
    *) run_check "$@" ;;
esac
