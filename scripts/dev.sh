#!/usr/bin/env bash
# Tessera's one entry point for a fresh machine: installs what it needs, then runs the demo or the tests.
#
#   bash scripts/dev.sh demo [args...]   the suite on its embedded default (simulated GPU cluster)
#   bash scripts/dev.sh test [args...]   the test suite (pytest)
#
# It installs, each step only when missing:
#   - Debian packages the tests use (runc, crun, prometheus, busybox-static, containernetworking-plugins),
#     when run as root with apt-get; a package it cannot get is reported, and the tests that need it skip
#     with that reason;
#   - a virtual environment in .venv with Tessera, its Python dependencies and its demo and test extras;
#   - for the tests, Kubernetes, etcd and containerd built from upstream (scripts/build-kube.sh), and Helm
#     (scripts/build-helm.sh), once per machine.
# Set TESSERA_NO_APT=1 to skip the Debian step.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
debian_packages=(runc crun prometheus busybox-static containernetworking-plugins)

say() { printf '[tessera-dev] %s\n' "$*" >&2; }

install_debian_packages() {
    [ "${TESSERA_NO_APT:-0}" = 1 ] && return 0
    command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 || return 0
    local missing=()
    for p in "${debian_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        say "not root: cannot install ${missing[*]}; tests that need them will skip"
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed"
    # One package at a time, so one that is unavailable does not stop the others.
    for p in "${missing[@]}"; do
        apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 \
            || say "could not install $p; tests that need it will skip"
    done
}

install_python() {
    local stamp="$venv/.tessera-stamp" want
    want="$(sha256sum pyproject.toml | cut -c1-16)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    say "creating the virtual environment in .venv"
    local py="" candidate
    # Probe by running: a pyenv shim can exist for a version it will not run.
    for candidate in python3 python3.13 python3.12 python3.11; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            py="$candidate"
            break
        fi
    done
    if [ -z "$py" ]; then
        say "Tessera needs Python 3.11 or newer; none was found (python3 --version: $(python3 --version 2>&1))"
        exit 1
    fi
    rm -rf "$venv"
    if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
        # Debian's python3 needs python3-venv for venv (ensurepip).
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
        fi
        rm -rf "$venv"
        "$py" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -e ".[demo,test]"   # the demo draws PNGs (matplotlib)
    echo "$want" > "$stamp"
}

# build_tool <script> <variable> <what skips>: runs scripts/<script> (a build into a cache outside the tree,
# once per machine and pin) and exports its folder as <variable>; a failed build is said, and the tests
# that need it skip with the reason.
build_tool() {
    local folder
    if folder="$(bash "$root/scripts/$1")"; then
        export "$2=$folder"
    else
        say "scripts/$1 could not build (see above); $3 will skip"
    fi
}

# The real tier (tests/real/) runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler
# built from upstream's Go modules by scripts/build-kube.sh. KUBEBUILDER_ASSETS (a folder with those
# programs and kubectl) skips the build; TESSERA_NO_KUBE_BUILD=1 skips it too.
# The chart's tests (tests/deploy/test_helm_chart.py, tests/real/test_helm_install_upgrade_rollback.py) run
# helm built from its Go module by scripts/build-helm.sh (9 min cold on a busy 2-core machine).
# TESSERA_HELM_BIN (the folder or the program) skips the build; TESSERA_NO_HELM_BUILD=1 skips it too.
build_go_tools() {
    if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ "${TESSERA_NO_KUBE_BUILD:-0}" != 1 ]; then
        build_tool build-kube.sh TESSERA_KUBE_BIN "the real tier"
    fi
    if [ -z "${TESSERA_HELM_BIN:-}" ] && [ "${TESSERA_NO_HELM_BUILD:-0}" != 1 ]; then
        build_tool build-helm.sh TESSERA_HELM_BIN "the chart's tests"
    fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)
        install_python
        exec "$venv/bin/tessera" demo "$@"
        ;;
    test)
        install_debian_packages
        install_python
        build_go_tools
        # pytest exits 5 when it collected no test: that is a failure here too.
        exec "$venv/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: bash scripts/dev.sh demo|test [args...]" >&2
        exit 2
        ;;
esac
