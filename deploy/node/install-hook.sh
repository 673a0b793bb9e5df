#!/bin/sh
# tessera-install-hook: the device-plugin DaemonSet's init container (as root) runs this image
# script with the host's /opt/tessera, /etc/containerd, /etc/containers/oci/hooks.d and
# /etc/nvidia-container-runtime mounted under $HOST_ROOT. Its arguments are tessera-hook's settings
# (--runtime, --state-dir, --grant-key-path, --mps-user, --exempt-namespaces, ...).
#
# runc/crun run the hook on the host, outside any container, so the hook is copied to the host
# first: `python -m hook.release` builds a new release folder from the image's Python
# (python:3.12-slim, everything under /usr/local) with only what the hook imports (the interpreter,
# the standard library, and the hook, tessera, yaml and structlog packages: no kubernetes, grpc,
# numpy or matplotlib), and /opt/tessera/current is switched to it in one rename: a container
# starting meanwhile runs the old hook or the new one, never half of one. Then
# `tessera-hook install` writes the runtime's hook configuration (containerd base spec and drop-in,
# or CRI-O hooks.d) and sets NVIDIA's container-toolkit switch
# accept-nvidia-visible-devices-envvar-when-unprivileged = false where the toolkit is installed.
set -eu
HOST_ROOT=${HOST_ROOT:-/host}
PREFIX=${TESSERA_PREFIX:-/usr/local}
DEST=/opt/tessera
release=$(date +%Y%m%d%H%M%S)-$$
target="$HOST_ROOT$DEST/releases/$release"

"$PREFIX/bin/python3" -m hook.release "$target"

previous=$(readlink "$HOST_ROOT$DEST/current" 2>/dev/null || true)   # releases/<old>
ln -sfn "releases/$release" "$HOST_ROOT$DEST/current.new"
mv -T "$HOST_ROOT$DEST/current.new" "$HOST_ROOT$DEST/current"
# Keep the new release and the one before it (a hook started a moment ago may still import from it).
for old in "$HOST_ROOT$DEST"/releases/*; do
    case "$old" in
        "$target" | "$HOST_ROOT$DEST/$previous") ;;
        *) rm -rf "$old" ;;
    esac
done

exec tessera-hook install --root "$HOST_ROOT" --hook-path "$DEST/current/bin/tessera-hook" "$@"
