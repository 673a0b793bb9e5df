"""Container images for the real node, built here: no image registry is reachable from this machine.

Each image is an OCI image-layout tarball (``oci-layout``, ``index.json``, ``blobs/sha256/``) with one
uncompressed layer, written with the standard library and imported into containerd with
``ctr -n k8s.io images import``. Two images: the pod sandbox's ``pause`` (scripts/build-kube.sh builds
tools/pause), under the exact name containerd's CRI configuration pins, and ``busybox`` for test
containers (Debian's static busybox, with the applets tests use linked in /bin).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
BUSYBOX_IMAGE = "tessera.local/busybox:test"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "ls", "env", "sleep", "echo", "test", "grep", "readlink", "stat", "id", "true", "false")


@dataclass(frozen=True)
class ImageSpec:
    """What goes into one image: files (path in the image -> bytes and mode), symlinks, its command."""

    name: str
    files: dict[str, tuple[bytes, int]]
    links: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]


def pause_image(pause_binary: Path) -> ImageSpec:
    """The sandbox image around ``pause_binary``."""
    return ImageSpec(PAUSE_IMAGE, {"pause": (pause_binary.read_bytes(), 0o755)}, {}, ["/pause"], [])


def busybox_image(busybox: Path = BUSYBOX) -> ImageSpec:
    """A shell image from a static busybox (``sh -c`` and the applets in ``APPLETS``)."""
    return ImageSpec(BUSYBOX_IMAGE, {"bin/busybox": (busybox.read_bytes(), 0o755)},
                     {f"bin/{a}": "busybox" for a in APPLETS}, [], ["sh"])


def _layer(spec: ImageSpec) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in [*spec.files, *spec.links]} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, (data, mode) in sorted(spec.files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        for path, target in sorted(spec.links.items()):
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    return out.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def write_image(spec: ImageSpec, path: Path) -> Path:
    """Write ``spec`` as an OCI image-layout tarball at ``path``."""
    blobs: dict[str, bytes] = {}
    layer = _layer(spec)
    layer_desc = _blob(blobs, layer, "application/vnd.oci.image.layer.v1.tar")
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Entrypoint": spec.entrypoint or None, "Cmd": spec.cmd or None},
              "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}
    config_desc = _blob(blobs, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = _blob(blobs, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    tag = spec.name.rpartition(":")[2]
    manifest_desc["annotations"] = {"io.containerd.image.name": spec.name, "org.opencontainers.image.ref.name": tag}
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}
    with tarfile.open(path, "w") as tar:
        members = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
                   "index.json": json.dumps(index).encode(),
                   **{f"blobs/sha256/{d.removeprefix('sha256:')}": data for d, data in blobs.items()}}
        for name in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path
