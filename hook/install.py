"""``tessera-hook install``: write the container runtime's hook configuration on a node.

- CRI-O: two ``hooks.d`` files (hooks schema 1.0.0, ``when: always``), one for ``createRuntime``
  and one for ``poststop``; CRI-O reads ``/etc/containers/oci/hooks.d`` without a restart.
- containerd: a base runtime spec (containerd's default spec plus the hooks) at
  ``<containerd config dir>/tessera-base-spec.json`` and a config drop-in (``conf.d/tessera.toml``,
  config version 2, which containerd 1.7 reads as is and 2.x migrates on load) that sets ``base_runtime_spec``
  and ``container_annotations = ["tessera.io/*"]`` on the runc runtime (without the latter
  containerd does not copy a device plugin's annotations into config.json, and every GPU
  container would be refused as one that reaches GPU devices without a grant).
- NVIDIA container toolkit, where ``/etc/nvidia-container-runtime/config.toml`` exists:
  ``accept-nvidia-visible-devices-envvar-when-unprivileged = false``, so an image's
  ``NVIDIA_VISIBLE_DEVICES`` does not hand a CPU pod GPUs behind the scheduler's back.

Every setting is written into the hook's arguments, so no container start reads a config file.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from hook.settings import HookSettings

CRIO_HOOKS_DIR = "etc/containers/oci/hooks.d"
CONTAINERD_CONFIG_DIR = "/etc/containerd"   # k3s: /var/lib/rancher/k3s/agent/etc/containerd
CONTAINERD_BASE_SPEC = "tessera-base-spec.json"
CONTAINERD_DROP_IN = "conf.d/tessera.toml"
TOOLKIT_CONFIG = "etc/nvidia-container-runtime/config.toml"
TOOLKIT_SWITCH = "accept-nvidia-visible-devices-envvar-when-unprivileged"
# The switch's line as it was before the first install (JSON {"line": text or null}), for uninstall.
TOOLKIT_RECORD = "etc/nvidia-container-runtime/.tessera-toolkit-switch.json"
HOOK_TIMEOUT_S = 10

_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
         "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
         "CAP_AUDIT_WRITE"]


def default_hook_path() -> str:
    """The installed ``tessera-hook`` beside this Python, else on PATH, else this program."""
    beside = os.path.join(os.path.dirname(sys.executable), "tessera-hook")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("tessera-hook") or os.path.abspath(sys.argv[0])


def hook_entries(settings: HookSettings, hook_path: str) -> dict[str, list[dict]]:
    """The OCI ``hooks`` section: createRuntime and poststop, every setting as a flag."""
    def entry(stage: str) -> dict:
        return {"path": hook_path, "args": ["tessera-hook", stage, *settings.as_flags()],
                "timeout": HOOK_TIMEOUT_S}
    return {"createRuntime": [entry("createRuntime")], "poststop": [entry("poststop")]}


def containerd_default_spec() -> dict:
    """containerd's default Linux spec (``ctr oci spec`` of containerd 2.4, the CRI's starting point
    where no base runtime spec is set), which a base runtime spec replaces. Older containerd masks
    fewer paths (1.7 leaves ``/proc/interrupts`` visible); masking more is harmless there."""
    return {
        "ociVersion": "1.1.0",
        "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/",
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        ],
        "linux": {
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/sys/devices/virtual/powercap", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            "cgroupsPath": "/default",
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
        },
    }


def write_atomically(root: str, relative: str, text: str) -> str:
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:   # the text's own line ends, byte for byte
        fh.write(text)
    os.replace(tmp, path)
    return path


def install_crio(settings: HookSettings, root: str, hook_path: str) -> list[str]:
    """Write CRI-O's hooks.d files; return what was written."""
    written = []
    for stage, entries in hook_entries(settings, hook_path).items():
        entry = entries[0]
        doc = {"version": "1.0.0",
               "hook": {"path": entry["path"], "args": entry["args"], "timeout": entry["timeout"]},
               "when": {"always": True}, "stages": [stage]}
        written.append(write_atomically(root, f"{CRIO_HOOKS_DIR}/tessera-{stage.lower()}.json",
                              json.dumps(doc, indent=2) + "\n"))
    return written


def containerd_drop_in(base_spec: str, config_dir: str = CONTAINERD_CONFIG_DIR) -> str:
    """The containerd drop-in for the CRI plugin's runc runtime (config version 2: containerd 1.6/1.7
    read it as is, 2.x migrates it on load and merges it key by key into the main config's tables)."""
    return (
        "# Written by tessera-hook install. containerd reads it where config.toml has\n"
        f'# imports = ["{config_dir}/conf.d/*.toml"].\n'
        "version = 2\n\n"
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
        f'  base_runtime_spec = "{base_spec}"\n'
        '  container_annotations = ["tessera.io/*"]\n'
    )


def install_containerd(settings: HookSettings, root: str, hook_path: str,
                       config_dir: str = CONTAINERD_CONFIG_DIR) -> list[str]:
    """Write containerd's base runtime spec and config drop-in into ``config_dir`` (a path as the host
    sees it, under ``root``); return what was written."""
    spec = containerd_default_spec()
    spec["hooks"] = hook_entries(settings, hook_path)
    folder = os.path.join("/", config_dir).rstrip("/")
    base = write_atomically(root, f"{folder}/{CONTAINERD_BASE_SPEC}".lstrip("/"), json.dumps(spec, indent=2) + "\n")
    drop_in = write_atomically(root, f"{folder}/{CONTAINERD_DROP_IN}".lstrip("/"),
                     containerd_drop_in(f"{folder}/{CONTAINERD_BASE_SPEC}", folder))
    return [base, drop_in]


def toolkit_switch_line(text: str) -> str | None:
    """The switch's top-level line in ``config.toml`` text (commented out or not), or None. Lines end at
    ``\n`` only: a ``\r`` or a form feed in the file is kept as it is."""
    for existing in text.split("\n"):
        stripped = existing.strip().lstrip("#").strip()
        if stripped.startswith(TOOLKIT_SWITCH) and "=" in stripped:
            return existing
        if existing.strip().startswith("["):
            return None
    return None


def record_toolkit_switch(root: str, text: str, written: str) -> str | None:
    """Keep the file as it was before Tessera's first install and as install wrote it, and the switch's
    line then (a later install keeps the first record: the line is Tessera's own by then); the record's
    path, or None when one was kept already."""
    if os.path.exists(os.path.join(root, TOOLKIT_RECORD)):
        return None
    doc = {"line": toolkit_switch_line(text), "original": text, "written": written}
    return write_atomically(root, TOOLKIT_RECORD, json.dumps(doc) + "\n")


def set_toolkit_switch(text: str) -> str:
    """``config.toml`` text with the toolkit switch set to false (a top-level key, before any table); every
    other byte as it was."""
    line = f"{TOOLKIT_SWITCH} = false"
    lines = text.split("\n")
    for i, existing in enumerate(lines):
        stripped = existing.strip().lstrip("#").strip()
        if stripped.startswith(TOOLKIT_SWITCH) and "=" in stripped:
            lines[i] = line + ("\r" if existing.endswith("\r") else "")
            return "\n".join(lines)
        if existing.strip().startswith("["):
            return "\n".join(lines[:i] + [line, ""] + lines[i:])
    if lines[-1] == "":   # ends with a newline: the key goes before it
        return "\n".join(lines[:-1] + [line, ""])
    return "\n".join(lines + [line, ""])


def install(settings: HookSettings, root: str = "/", hook_path: str | None = None,
            containerd_config_dir: str = CONTAINERD_CONFIG_DIR) -> list[str]:
    """Install for ``settings.runtime`` under ``root`` (the host's ``/``); return lines saying what was
    written. ``containerd_config_dir`` is containerd's configuration folder as the host sees it."""
    hook_path = hook_path or default_hook_path()
    if settings.runtime == "crio":
        written = install_crio(settings, root, hook_path)
        notes = ["CRI-O picks up hooks.d changes without a restart"]
    else:
        written = install_containerd(settings, root, hook_path, containerd_config_dir)
        folder = os.path.join("/", containerd_config_dir).rstrip("/")
        notes = [f'containerd: make sure {folder}/config.toml has imports = ["{folder}/conf.d/*.toml"]'
                 ", then restart containerd"]
    toolkit = os.path.join(root, TOOLKIT_CONFIG)
    if os.path.exists(toolkit):
        with open(toolkit, encoding="utf-8", newline="") as fh:
            text = fh.read()
        switched = set_toolkit_switch(text)
        recorded = record_toolkit_switch(root, text, switched)
        written += [recorded] if recorded else []
        written.append(write_atomically(root, TOOLKIT_CONFIG, switched))
        notes.append(f"NVIDIA container toolkit: {TOOLKIT_SWITCH} = false")
    return [f"wrote {path}" for path in written] + [f"note: {n}" for n in notes]
