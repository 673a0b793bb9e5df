"""The OCI runtime ``config.json`` a container runtime would hand runc for one container.

:func:`build_config` is pure apart from ``os.stat`` on device paths: it takes the pod (a dict as the
API returns it), the container's name, the device plugins' ContainerAllocateResponses for that
container, a rootfs and a runtime flavour, and returns the spec as a dict.

How the kubelet merges several allocate responses for one container (``deviceRunContainerOptions``
in ``pkg/kubelet/cm/devicemanager/pod_devices.go``): responses are visited one resource after
another (Go map order, so random in the kubelet; here the order given); for env variables, mounts
(keyed by container path), devices (keyed by container path) and annotations the *first* response
to set a key wins and later ones are skipped with a log line. The merged env variables come before
the container's own ``env`` in the list the kubelet sends over CRI.

What each runtime does with that list:

- ``containerd``: starts from ``PATH=<default>``; each variable replaces an existing entry of the
  *default* list or is appended, so a name set twice (plugin and pod) is kept twice, the plugin's
  copy first (``getenv`` finds the plugin's value). Container annotations (the plugins') pass only
  where the runtime's ``container_annotations`` allow them; pod annotations only where
  ``pod_annotations`` allow; plus the CRI keys ``io.kubernetes.cri.*``.
- ``crio``: one copy of each variable, in first-seen position, the last value (the pod's) winning.
  Every pod annotation is copied, then the plugins' annotations (assumed to win on a clash; a
  signed grant must not depend on that), then ``io.kubernetes.pod.*``/``io.kubernetes.container.name``.

Not simulated: ``valueFrom``/``envFrom``, ``$(VAR)`` expansion, service-link variables, image
config, CDI device resolution (CDI names are logged and left out).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hook.install import containerd_default_spec
from tessera import ANNOTATION_PREFIX
from tessera.kubeletapi import deviceplugin_pb2 as api
from tessera.log import get_logger

log = get_logger("simkubelet")

RUNTIME_FLAVOURS: tuple[str, ...] = ("containerd", "crio")
DEFAULT_CONTAINER_ANNOTATIONS: tuple[str, ...] = (ANNOTATION_PREFIX,)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCI_VERSION = "1.0.2"

DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclass
class DeviceRunOptions:
    """What the kubelet hands the runtime from the device plugins (its ``DeviceRunContainerOptions``)."""

    envs: list[tuple[str, str]] = field(default_factory=list)
    mounts: list[api.Mount] = field(default_factory=list)
    devices: list[api.DeviceSpec] = field(default_factory=list)
    annotations: list[tuple[str, str]] = field(default_factory=list)
    cdi_devices: list[str] = field(default_factory=list)


def merge_allocate_responses(responses: Iterable[api.ContainerAllocateResponse]) -> DeviceRunOptions:
    """Merge one container's allocate responses the kubelet's way: first response wins per key.

    Within one response env and annotation keys are taken in sorted order (Go map order is random).
    """
    merged = DeviceRunOptions()
    envs: dict[str, str] = {}
    annotations: dict[str, str] = {}
    mounts: set[str] = set()
    devices: set[str] = set()
    for response in responses:
        for key in sorted(response.envs):
            if key in envs:
                if envs[key] != response.envs[key]:
                    log.info("env_conflict_skipped", key=key, kept=envs[key], skipped=response.envs[key])
                continue
            envs[key] = response.envs[key]
            merged.envs.append((key, response.envs[key]))
        for mount in response.mounts:
            if mount.container_path not in mounts:
                mounts.add(mount.container_path)
                merged.mounts.append(mount)
        for device in response.devices:
            if device.container_path not in devices:
                devices.add(device.container_path)
                merged.devices.append(device)
        for key in sorted(response.annotations):
            if key not in annotations:
                annotations[key] = response.annotations[key]
                merged.annotations.append((key, response.annotations[key]))
        for cdi in response.cdi_devices:
            if cdi.name not in merged.cdi_devices:
                merged.cdi_devices.append(cdi.name)
    return merged


def annotation_allowed(key: str, patterns: Iterable[str]) -> bool:
    """Whether a runtime allow-list admits ``key``: an entry is a prefix; a trailing ``*`` is ignored,
    so containerd's glob spelling ``tessera.io/*`` and the prefix ``tessera.io/`` mean the same."""
    return any(key.startswith(p[:-1] if p.endswith("*") else p) for p in patterns)


def container_env(container: dict) -> list[tuple[str, str]]:
    """The container's own ``env`` as (name, value); ``valueFrom`` entries are not simulated."""
    result = []
    for item in container.get("env") or []:
        if "valueFrom" in item:
            log.info("env_value_from_skipped", name=item.get("name"))
            continue
        result.append((item["name"], str(item.get("value", ""))))
    return result


def runtime_env(flavour: str, ordered: Sequence[tuple[str, str]]) -> list[str]:
    """The process env a runtime builds from the kubelet's ordered list (see the module docstring)."""
    result = [f"PATH={DEFAULT_PATH}"]
    if flavour == "containerd":
        defaults = {"PATH": 0}  # containerd's replaceOrAppendEnvValues indexes only the defaults
        for name, value in ordered:
            if name in defaults:
                result[defaults[name]] = f"{name}={value}"
            else:
                result.append(f"{name}={value}")
        return result
    index = {"PATH": 0}
    for name, value in ordered:
        if name in index:
            result[index[name]] = f"{name}={value}"
        else:
            index[name] = len(result)
            result.append(f"{name}={value}")
    return result


def _find_container(pod: dict, name: str) -> dict:
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if container.get("name") == name:
            return container
    raise KeyError(f"pod {pod.get('metadata', {}).get('name')!r} has no container {name!r}")


def _default_mounts() -> list[dict]:
    """containerd's default mounts (the spec every container on a node starts from, as the hook's
    installer writes it), less its /run tmpfs, plus the cgroup filesystem read-only."""
    mounts = [m for m in containerd_default_spec()["mounts"] if m["destination"] != "/run"]
    return mounts + [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}]


def _host_path_mounts(pod: dict, container: dict) -> list[dict]:
    """The container's ``volumeMounts`` of ``hostPath`` volumes, as the kubelet hands them to the runtime."""
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    mounts = []
    for vm in container.get("volumeMounts") or []:
        host_path = (volumes.get(vm.get("name")) or {}).get("hostPath") or {}
        if host_path.get("path"):
            mounts.append({"destination": vm["mountPath"], "type": "bind", "source": host_path["path"],
                           "options": ["rbind", "rprivate", "ro" if vm.get("readOnly") else "rw"]})
    return mounts


def _mounts(merged: DeviceRunOptions, pod: dict, container: dict) -> list[dict]:
    """Default mounts, less any whose destination a plugin mount takes over, then the plugin binds,
    then the pod's hostPath volumes."""
    taken = {m.container_path for m in merged.mounts}
    mounts = [m for m in _default_mounts() if m["destination"] not in taken]
    for mount in merged.mounts:
        mounts.append({"destination": mount.container_path, "type": "bind", "source": mount.host_path,
                       "options": ["rbind", "rprivate", "ro" if mount.read_only else "rw"]})
    return mounts + _host_path_mounts(pod, container)


def _devices(merged: DeviceRunOptions) -> tuple[list[dict], list[dict]]:
    """``linux.devices`` entries and their cgroup allow rules, from the host device nodes."""
    nodes: list[dict] = []
    rules: list[dict] = [{"allow": False, "access": "rwm"}]
    for device in merged.devices:
        try:
            st = os.stat(device.host_path)
        except OSError as err:
            log.info("oci_device_skipped", host_path=device.host_path, reason=str(err))
            continue
        if stat.S_ISCHR(st.st_mode):
            kind = "c"
        elif stat.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            log.info("oci_device_skipped", host_path=device.host_path, reason="not a device node")
            continue
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        nodes.append({"path": device.container_path, "type": kind, "major": major, "minor": minor,
                      "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0})
        rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                      "access": device.permissions or "rwm"})
    for name in merged.cdi_devices:
        log.info("oci_cdi_device_unresolved", device=name)
    return nodes, rules


def _process(pod: dict, container: dict, env: list[str]) -> dict:
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", 0))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", 0))
    user: dict = {"uid": int(uid), "gid": int(gid)}
    if pod_sc.get("supplementalGroups"):
        user["additionalGids"] = [int(g) for g in pod_sc["supplementalGroups"]]
    caps = list(DEFAULT_CAPABILITIES)
    wanted = sc.get("capabilities") or {}
    for cap in wanted.get("add") or []:
        cap = cap if cap.startswith("CAP_") else f"CAP_{cap}"
        if cap not in caps:
            caps.append(cap)
    dropped = {c if c.startswith("CAP_") else f"CAP_{c}" for c in wanted.get("drop") or []}
    caps = [] if "CAP_ALL" in dropped else [c for c in caps if c not in dropped]
    return {
        "terminal": False,
        "user": user,
        "args": list(container.get("command") or []) + list(container.get("args") or []) or ["sh"],
        "env": env,
        "cwd": container.get("workingDir") or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sc.get("allowPrivilegeEscalation") is False,
    }


def _namespaces(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    kinds = ["mount"]
    if not spec.get("hostPID"):
        kinds.append("pid")
    if not spec.get("hostIPC"):
        kinds.append("ipc")
    if not spec.get("hostNetwork"):
        kinds += ["uts", "network"]
    return [{"type": kind} for kind in kinds]


def _annotations(pod: dict, container_name: str, merged: DeviceRunOptions, flavour: str,
                 container_annotations: Sequence[str], pod_annotations: Sequence[str]) -> dict[str, str]:
    meta = pod.get("metadata") or {}
    name, namespace, uid = meta.get("name", ""), meta.get("namespace", "default"), meta.get("uid", "")
    from_pod = meta.get("annotations") or {}
    if flavour == "containerd":
        result = {k: v for k, v in merged.annotations if annotation_allowed(k, container_annotations)}
        result.update({k: v for k, v in sorted(from_pod.items()) if annotation_allowed(k, pod_annotations)})
        result.update({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-name": name,
            "io.kubernetes.cri.sandbox-namespace": namespace,
            "io.kubernetes.cri.sandbox-uid": uid,
            "io.kubernetes.cri.container-name": container_name,
        })
        return result
    result = dict(sorted(from_pod.items()))
    result.update(dict(merged.annotations))
    result.update({
        "io.kubernetes.pod.name": name,
        "io.kubernetes.pod.namespace": namespace,
        "io.kubernetes.pod.uid": uid,
        "io.kubernetes.container.name": container_name,
    })
    return result


def build_config(
    pod: dict,
    container_name: str,
    responses: Iterable[api.ContainerAllocateResponse],
    *,
    rootfs: str,
    flavour: str = "containerd",
    container_annotations: Sequence[str] = DEFAULT_CONTAINER_ANNOTATIONS,
    pod_annotations: Sequence[str] = (),
) -> dict:
    """The OCI ``config.json`` (as a dict) that ``flavour`` would give runc for this container.

    ``responses`` are the container's ContainerAllocateResponses, one per device-plugin resource,
    merged as the kubelet does (:func:`merge_allocate_responses`). ``container_annotations`` and
    ``pod_annotations`` are containerd's allow-lists; CRI-O ignores them.
    """
    if flavour not in RUNTIME_FLAVOURS:
        raise ValueError(f"runtime flavour {flavour!r} is not one of {', '.join(RUNTIME_FLAVOURS)}")
    container = _find_container(pod, container_name)
    merged = merge_allocate_responses(responses)
    env = runtime_env(flavour, merged.envs + container_env(container))
    nodes, rules = _devices(merged)
    spec = pod.get("spec") or {}
    sc = container.get("securityContext") or {}
    config = {
        "ociVersion": OCI_VERSION,
        "process": _process(pod, container, env),
        "root": {"path": rootfs, "readonly": bool(sc.get("readOnlyRootFilesystem"))},
        "mounts": _mounts(merged, pod, container),
        "linux": {
            "namespaces": _namespaces(pod),
            "devices": nodes,
            "resources": {"devices": rules},
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
        "annotations": _annotations(pod, container_name, merged, flavour, container_annotations, pod_annotations),
    }
    if not spec.get("hostNetwork"):
        config["hostname"] = spec.get("hostname") or (pod.get("metadata") or {}).get("name", "")
    return config
