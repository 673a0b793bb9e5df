"""``tessera-hook uninstall``: take what ``tessera-hook install`` wrote off a node.

Both runtimes' files are looked for, whatever ``--runtime`` says.

- CRI-O: its two hooks.d files (CRI-O stops running the hook at once).
- containerd: the config drop-in and the base runtime spec. containerd read both at its start, so it
  keeps running the hook until it is restarted; the hook's release folder (``/opt/tessera``) must stay
  until then, or every container start would fail on a hook that is gone. The lines printed say so.
- NVIDIA container toolkit: the switch ``accept-nvidia-visible-devices-envvar-when-unprivileged`` put
  back as it was before the first install (the line install recorded), the rest of the file untouched.

Uninstalling twice, or where nothing was installed, removes nothing and says so.
"""

from __future__ import annotations

import json
import os

from hook.install import (
    CONTAINERD_BASE_SPEC,
    CONTAINERD_CONFIG_DIR,
    CONTAINERD_DROP_IN,
    CRIO_HOOKS_DIR,
    TOOLKIT_CONFIG,
    TOOLKIT_RECORD,
    TOOLKIT_SWITCH,
    write_atomically,
    toolkit_switch_line,
)


def _remove(root: str, relative: str) -> list[str]:
    path = os.path.join(root, relative.lstrip("/"))
    try:
        os.unlink(path)
    except FileNotFoundError:
        return []
    return [path]


def restore_toolkit_switch(text: str, record: dict) -> str:
    """``config.toml`` text as before install: the file install wrote, unchanged since, becomes the file it
    found again, byte for byte; a file edited since keeps the edits and gets the switch's line back (none
    where there was none)."""
    if record.get("written") == text and isinstance(record.get("original"), str):
        return record["original"]
    original = record.get("line")
    current = toolkit_switch_line(text)
    if current is None:
        return text
    lines = text.split("\n")
    at = lines.index(current)
    if isinstance(original, str):
        lines[at] = original
    else:
        del lines[at]
    return "\n".join(lines)


def uninstall_toolkit_switch(root: str) -> list[str]:
    """Put the toolkit file back from install's record; lines saying what was done."""
    record_path = os.path.join(root, TOOLKIT_RECORD)
    try:
        with open(record_path, encoding="utf-8") as fh:
            record = json.load(fh)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        return [f"note: NVIDIA container toolkit: {record_path} is unreadable ({exc}); {TOOLKIT_SWITCH} left as it is"]
    config = os.path.join(root, TOOLKIT_CONFIG)
    out = []
    if os.path.exists(config):
        with open(config, encoding="utf-8", newline="") as fh:
            text = fh.read()
        restored = restore_toolkit_switch(text, record)
        if restored != text:
            write_atomically(root, TOOLKIT_CONFIG, restored)
            line = record.get("line")
            out.append(f"restored {config} ({TOOLKIT_SWITCH}: {line.strip() if isinstance(line, str) else 'unset'})")
    os.unlink(record_path)
    return out + [f"removed {record_path}"]


def uninstall(runtime: str, root: str = "/", containerd_config_dir: str = CONTAINERD_CONFIG_DIR) -> list[str]:
    """Remove what ``install`` wrote under ``root``, for both runtimes whatever ``runtime`` says (a node
    installed for the other one, or moved between them, is cleaned too); lines saying what was removed."""
    crio = [p for stage in ("createruntime", "poststop") for p in _remove(root, f"{CRIO_HOOKS_DIR}/tessera-{stage}.json")]
    folder = os.path.join("/", containerd_config_dir).rstrip("/")
    containerd = _remove(root, f"{folder}/{CONTAINERD_DROP_IN}") + _remove(root, f"{folder}/{CONTAINERD_BASE_SPEC}")
    notes = (["CRI-O stops running the hook without a restart"] if crio else []) + \
        (["containerd: restart it to stop running the hook; remove /opt/tessera only after that"] if containerd else [])
    lines = [f"removed {p}" for p in crio + containerd] + uninstall_toolkit_switch(root)
    if not lines:
        return [f"note: nothing of Tessera's found under {root} (containerd's folder {folder}; a k3s or RKE2 node "
                "keeps it in /var/lib/rancher/k3s/agent/etc/containerd: --containerd-config-dir)"]
    return lines + [f"note: {n}" for n in notes]
