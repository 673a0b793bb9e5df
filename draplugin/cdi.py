"""One CDI spec file per prepared claim, in the folder containerd reads CDI specs from.

The kubelet hands the CDI device IDs NodePrepareResources returned to the runtime (CRI
``ContainerConfig.CDI_devices``); containerd finds them in its ``cdi_spec_dirs`` (``/etc/cdi`` and
``/var/run/cdi`` by default) and applies their container edits. The spec's kind is
``k8s.gpu.tessera.io/claim``, a device per allocated GPU named ``<claim uid>-<device>``, as NVIDIA's
DRA driver names its own. Files are written whole under a temporary name and renamed, so containerd's
spec watcher never reads half a file.
"""

from __future__ import annotations

from pathlib import Path

from draplugin.privatefile import write_private_json

CDI_VERSION = "0.6.0"
CDI_KIND = "k8s.gpu.tessera.io/claim"


def spec_path(cdi_dir: str, claim_uid: str) -> Path:
    """The spec file of claim ``claim_uid``."""
    return Path(cdi_dir) / f"k8s.gpu.tessera.io-claim_{claim_uid}.json"


def device_id(claim_uid: str, device: str) -> str:
    """The fully qualified CDI name of ``device`` of claim ``claim_uid``."""
    return f"{CDI_KIND}={claim_uid}-{device}"


def claim_spec(claim_uid: str, devices: dict[str, dict]) -> dict:
    """The CDI spec of one claim: ``devices`` maps each device's name to its container edits."""
    return {"cdiVersion": CDI_VERSION, "kind": CDI_KIND,
            "devices": [{"name": f"{claim_uid}-{name}", "containerEdits": edits} for name, edits in devices.items()]}


def container_edits(env: dict[str, str], device_nodes: list[tuple[str, str]],
                    mounts: list[tuple[str, str]] = ()) -> dict:
    """Edits that set ``env``, give the device nodes ``(container path, host path)`` (containerd reads
    their type and numbers from the host path) and bind-mount ``mounts`` ``(host path, container path)``
    read-write (an MPS client's pipe and shm folders)."""
    edits = {"env": [f"{k}={v}" for k, v in env.items()],
             "deviceNodes": [{"path": path, "hostPath": host, "permissions": "rw"} for path, host in device_nodes]}
    if mounts:
        edits["mounts"] = [{"hostPath": host, "containerPath": path, "type": "bind",
                            "options": ["rbind", "rw", "nosuid", "nodev"]} for host, path in mounts]
    return edits


def write_spec(cdi_dir: str, claim_uid: str, spec: dict) -> Path:
    """Write the claim's spec (mode 0600: it holds the claim's grant, for root only) and return its path."""
    path = spec_path(cdi_dir, claim_uid)
    write_private_json(path, spec, indent=1, sort_keys=True)
    return path


def remove_spec(cdi_dir: str, claim_uid: str) -> bool:
    """Remove the claim's spec; whether there was one."""
    try:
        spec_path(cdi_dir, claim_uid).unlink()
        return True
    except FileNotFoundError:
        return False
