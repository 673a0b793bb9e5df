#!/bin/sh
# tessera-install-hook: the device-plugin DaemonSet's init container (as root) runs this image
# script with the host's /opt/tessera, /etc/containerd, /etc/containers/oci/hooks.d and
# /etc/nvidia-container-runtime mounted under $HOST_ROOT. Its arguments are tessera-hook's settings
# (--runtime, --state-dir, --grant-key-path, --mps-user, --exempt-namespaces, ...).
#
# runc/crun run the hook on the host, outside any container, so the image's Python with Tessera
# installed (python:3.12-slim, everything under /usr/local) is copied to the host first, into a
# new release folder, and /opt/tessera/current is switched to it in one rename: a container
# starting meanwhile runs the old hook or the new one, never half of one. Then
# `tessera-hook install` writes the runtime's hook configuration (containerd base spec and drop-in,
# or CRI-O hooks.d) and sets NVIDIA's container-toolkit switch
# accept-nvidia-visible-devices-envvar-when-unprivileged = false where the toolkit is installed.
set -eu
HOST_ROOT=${HOST_ROOT:-/host}
PREFIX=${TESSERA_PREFIX:-/usr/local}
DEST=/opt/tessera
python=$(readlink -f "$PREFIX/bin/python3")
version=$(basename "$python")                      # python3.12
release=$(date +%Y%m%d%H%M%S)-$$
target="$HOST_ROOT$DEST/releases/$release"

mkdir -p "$target/bin" "$target/lib"
cp -a "$PREFIX/lib/$version" "$target/lib/"
for lib in "$PREFIX"/lib/libpython3*.so*; do
    [ -e "$lib" ] && cp -a "$lib" "$target/lib/"
done
cp "$python" "$target/bin/$version"
cat > "$target/bin/tessera-hook" <<HOOK
#!/bin/sh
LD_LIBRARY_PATH=$DEST/current/lib exec $DEST/current/bin/$version -I -m hook.main "\$@"
HOOK
chmod 0755 "$target/bin/tessera-hook"

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
