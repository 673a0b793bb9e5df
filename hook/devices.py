"""Which GPU device nodes a container's spec would reach, checked against what its grants allow.

A GPU device node is a character device with NVIDIA's major 195 or a major that ``/proc/devices``
names ``nvidia*`` (``nvidia-uvm``, ``nvidia-caps``: dynamic), or any path ``/dev/nvidia*``. A
spec reaches one through a ``linux.devices`` entry (the node is created), a ``linux.resources.devices``
allow rule (the device cgroup lets it be opened), or a bind mount of ``/dev`` or ``/dev/nvidia*``.

An allow rule reaches GPU devices unless it is for block devices (type ``b``) or names one major that
is not NVIDIA's: a rule of any type (``a``, or no type) or with a wildcard major (absent, null, -1,
or anything but a number) lets the container ``mknod`` and open a GPU. Only the allow-everything
outcome of a privileged container is told apart (see :func:`check_ungranted`).

Granted containers may reach their granted nodes plus the control nodes every CUDA process needs
(``nvidiactl`` 195:255 and the ``nvidia-uvm`` major); nothing else. The cgroup is what enforces
it: :func:`tighten_cgroup` also denies, in the container's v1 device cgroup, any GPU entry the
runtime allowed beyond that (on cgroup v2 the spec check is the guarantee).
"""

from __future__ import annotations

import os
import stat

from hook.errors import Refused

NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255
REQUEST_INSTEAD = "request nvidia.com/gpu, nvidia.com/mps-core or a MIG resource instead"
CGROUP_V1_DEVICES = "/sys/fs/cgroup/devices"


class GpuMajors:
    """NVIDIA's character-device majors on this host."""

    __slots__ = ("all", "uvm")

    def __init__(self, all_majors: set[int], uvm: set[int]) -> None:
        self.all = set(all_majors) | {NVIDIA_MAJOR}
        self.uvm = set(uvm)


def read_majors(path: str = "/proc/devices") -> GpuMajors:
    """Parse the character-device section of ``/proc/devices`` for ``nvidia*`` drivers."""
    majors: set[int] = set()
    uvm: set[int] = set()
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return GpuMajors(majors, uvm)
    section = text.split("Block devices:")[0]
    for line in section.splitlines():
        number, _, name = line.strip().partition(" ")
        if number.isdigit() and name.startswith("nvidia"):
            majors.add(int(number))
            if name.startswith("nvidia-uvm"):
                uvm.add(int(number))
    return GpuMajors(majors, uvm)


def _wild(value: object) -> bool:
    """A wildcard as the runtimes read one: absent, null or -1."""
    return value is None or (value == -1 and not isinstance(value, bool))


def _exact(value: object) -> bool:
    """One device number; anything else (a wildcard, a string, a negative) may match any."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _char_devices(rule: dict) -> bool:
    """Whether the rule covers character devices: every type but ``b`` (an absent type means all)."""
    return rule.get("type") != "b"


def _reads_or_writes(rule: dict) -> bool:
    access = rule.get("access")
    return access is None or "r" in str(access) or "w" in str(access)


def is_all_devices(rule: dict) -> bool:
    """An allow rule that opens every character device (what a privileged container gets)."""
    return (bool(rule.get("allow")) and _char_devices(rule) and _wild(rule.get("major"))
            and _wild(rule.get("minor")) and _reads_or_writes(rule))


def privileged(rules: list[dict]) -> bool:
    """Whether the device rules end up allowing every device (the last matching rule wins)."""
    result = False
    for rule in rules:
        if _char_devices(rule) and _wild(rule.get("major")) and _wild(rule.get("minor")):
            result = is_all_devices(rule)
    return result


def _is_gpu_path(path: object) -> bool:
    return isinstance(path, str) and os.path.normpath(path).startswith("/dev/nvidia")


def gpu_nodes(devices: list[dict], majors: GpuMajors) -> list[dict]:
    """The ``linux.devices`` entries that are GPU device nodes."""
    return [d for d in devices
            if (d.get("type") in ("c", "u") and d.get("major") in majors.all) or _is_gpu_path(d.get("path"))]


def _is_gpu_char_device(path: str, majors: GpuMajors) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in majors.all


def gpu_mounts(mounts: list[dict], majors: GpuMajors) -> list[str]:
    """Bind-mount sources that are the host's whole ``/dev``, one of its ``/dev/nvidia*`` entries, or a
    GPU character device anywhere else (a driver root such as ``/run/nvidia/driver`` holds them too)."""
    found = []
    for mount in mounts:
        options = mount.get("options") or []
        if mount.get("type") != "bind" and "bind" not in options and "rbind" not in options:
            continue
        source = mount.get("source")
        if not isinstance(source, str):
            continue
        real = os.path.realpath(source)
        if (real == "/dev" or _is_gpu_path(real) or _is_gpu_path(source) or os.path.normpath(source) == "/dev"
                or _is_gpu_char_device(real, majors)):
            found.append(source)
    return found


def gpu_rules(rules: list[dict], majors: GpuMajors) -> list[dict]:
    """Allow rules that let a GPU device be read or written: a GPU major, or any major but one exact number."""
    return [r for r in rules
            if r.get("allow") and _reads_or_writes(r) and _char_devices(r)
            and (not _exact(r.get("major")) or r.get("major") in majors.all)]


def _describe(node: dict) -> str:
    return f"{node.get('path')} ({node.get('major')}:{node.get('minor')})"


def _describe_number(value: object) -> str:
    return "*" if _wild(value) else str(value) if _exact(value) else repr(value)


def _describe_rule(rule: dict) -> str:
    major, minor = _describe_number(rule.get("major")), _describe_number(rule.get("minor"))
    return f"device rule '{rule.get('type') or 'a'} {major}:{minor} {rule.get('access', 'rwm')}'"


def check_ungranted(devices: list[dict], rules: list[dict], mounts: list[dict], majors: GpuMajors,
                    who: str) -> None:
    """Refuse a container without a grant whose spec would reach a GPU device node.

    A GPU node in ``linux.devices``, a bind mount of ``/dev`` or ``/dev/nvidia*``, or an allow rule
    that reaches a GPU (a GPU major, or a wildcard one: ``c *:0 rwm`` opens GPU 0) is refused. Rules
    that end up allowing every device (a privileged container) are not: with no GPU node or mount
    it reaches no GPU through the runtime, and privileged pods are Pod Security's business; with
    one, the node or mount is refused as above.
    """
    nodes = gpu_nodes(devices, majors)
    if nodes:
        raise Refused(f"{who} has no Tessera grant but its spec gives it {_describe(nodes[0])}; {REQUEST_INSTEAD}")
    binds = gpu_mounts(mounts, majors)
    if binds:
        raise Refused(f"{who} has no Tessera grant but bind-mounts {binds[0]}, which holds GPU device nodes; "
                      f"{REQUEST_INSTEAD}")
    if privileged(rules):
        return
    for rule in gpu_rules(rules, majors):
        raise Refused(f"{who} has no Tessera grant but its {_describe_rule(rule)} opens GPU devices; "
                      f"{REQUEST_INSTEAD}")


def check_present(devices: list[dict], granted_paths: set[str], who: str) -> None:
    """Refuse a grant whose device nodes the spec does not carry: the device plugin puts both in one
    Allocate response, so such a grant was copied in (a CRI-O pod can write annotations)."""
    missing = sorted(granted_paths - {d.get("path") for d in devices})
    if missing:
        raise Refused(f"{who}: its grant names {missing[0]}, which the spec does not carry: "
                      "a grant copied from another container is not honoured")


def permitted_numbers(devices: list[dict], granted_paths: set[str]) -> set[tuple[int, int]]:
    """(major, minor) of the spec's device nodes that a grant names, plus nvidiactl."""
    numbers = {(NVIDIA_MAJOR, NVIDIACTL_MINOR)}
    for node in devices:
        if node.get("path") in granted_paths and isinstance(node.get("major"), int) \
                and isinstance(node.get("minor"), int):
            numbers.add((node["major"], node["minor"]))
    return numbers


def _permitted(major: object, minor: object, numbers: set[tuple[int, int]], majors: GpuMajors) -> bool:
    if _exact(major) and major in majors.uvm:
        return True
    return _exact(major) and _exact(minor) and (major, minor) in numbers


def check_granted(devices: list[dict], rules: list[dict], mounts: list[dict], majors: GpuMajors,
                  granted_paths: set[str], who: str) -> set[tuple[int, int]]:
    """Refuse a granted container whose spec reaches a GPU node beyond its grants; return what it may open."""
    numbers = permitted_numbers(devices, granted_paths)
    for node in gpu_nodes(devices, majors):
        if node.get("path") in granted_paths or _permitted(node.get("major"), node.get("minor"), numbers, majors):
            continue
        raise Refused(f"{who}: its spec gives it {_describe(node)}, which no grant covers")
    for source in gpu_mounts(mounts, majors):
        if os.path.normpath(source) not in granted_paths:
            raise Refused(f"{who}: it bind-mounts {source}, which no grant covers")
    for rule in gpu_rules(rules, majors):
        if not _permitted(rule.get("major"), rule.get("minor"), numbers, majors):
            raise Refused(f"{who}: its {_describe_rule(rule)} opens GPUs that no grant covers")
    return numbers


def read_cgroups(pid: int) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path}; the v2 entry under the key ``""``."""
    result: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for controller in controllers.split(",") if controllers else [""]:
                    result[controller] = path
    except (OSError, ValueError):
        pass
    return result


def tighten_cgroup(cgroups: dict[str, str], numbers: set[tuple[int, int]], majors: GpuMajors,
                   root: str = CGROUP_V1_DEVICES) -> list[str]:
    """Deny, in the v1 device cgroup, every GPU entry beyond ``numbers``; return the entries denied.

    An allow-everything entry cannot be narrowed in cgroup v1, so it is refused.
    """
    path = cgroups.get("devices")
    if path is None:
        return []
    directory = os.path.join(root, path.lstrip("/"))
    try:
        with open(os.path.join(directory, "devices.list"), encoding="ascii") as fh:
            entries = fh.read().split()
    except OSError:
        return []
    denied = []
    for kind, number, access in zip(entries[0::3], entries[1::3], entries[2::3]):
        if kind not in ("a", "c") or ("r" not in access and "w" not in access):
            continue
        major_s, _, minor_s = number.partition(":")
        if major_s == "*":
            raise Refused(f"the container's device cgroup allows '{kind} {number} {access}': every GPU; refused")
        major, minor = int(major_s), (None if minor_s == "*" else int(minor_s))
        if major in majors.all and not _permitted(major, minor, numbers, majors):
            denied.append(f"{kind} {number} rwm")
    if denied:
        try:
            with open(os.path.join(directory, "devices.deny"), "w", encoding="ascii") as fh:
                for entry in denied:
                    fh.write(entry)
                    fh.flush()
        except OSError as err:
            raise Refused(f"cannot deny {denied[0]} in the device cgroup: {err.strerror}") from None
    return denied
