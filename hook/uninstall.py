"""``tessera-hook uninstall``: take what ``tessera-hook install`` wrote off a node.

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


def restore_toolkit_switch(text: str, original: str | None) -> str:
    """``config.toml`` text with the switch's line as it was (``original``; None: there was none)."""
    current = toolkit_switch_line(text)
    if current is None:
        return text
    lines = text.splitlines()
    at = lines.index(current)
    if original is None:
        del lines[at]
        if at < len(lines) and not lines[at].strip() and (at == 0 or not lines[at - 1].strip()):
            del lines[at]   # the blank line install put before the first table
    else:
        lines[at] = original
    return "\n".join(lines) + ("\n" if lines else "")


def uninstall_toolkit_switch(root: str) -> list[str]:
    """Put the toolkit switch back from install's record; lines saying what was done."""
    record = os.path.join(root, TOOLKIT_RECORD)
    try:
        with open(record, encoding="utf-8") as fh:
            original = json.load(fh).get("line")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError) as exc:
        return [f"note: NVIDIA container toolkit: {record} is unreadable ({exc}); {TOOLKIT_SWITCH} left as it is"]
    config = os.path.join(root, TOOLKIT_CONFIG)
    out = []
    if os.path.exists(config):
        with open(config, encoding="utf-8") as fh:
            text = fh.read()
        restored = restore_toolkit_switch(text, original)
        if restored != text:
            write_atomically(root, TOOLKIT_CONFIG, restored)
            out.append(f"restored {config} ({TOOLKIT_SWITCH}: {original.strip() if original else 'unset'})")
    os.unlink(record)
    return out + [f"removed {record}"]


def uninstall(runtime: str, root: str = "/", containerd_config_dir: str = CONTAINERD_CONFIG_DIR) -> list[str]:
    """Remove what ``install`` wrote for ``runtime`` under ``root``; lines saying what was removed."""
    if runtime == "crio":
        removed = [p for stage in ("createruntime", "poststop")
                   for p in _remove(root, f"{CRIO_HOOKS_DIR}/tessera-{stage}.json")]
        notes = ["CRI-O stops running the hook without a restart"] if removed else []
    else:
        folder = os.path.join("/", containerd_config_dir).rstrip("/")
        removed = _remove(root, f"{folder}/{CONTAINERD_DROP_IN}") + _remove(root, f"{folder}/{CONTAINERD_BASE_SPEC}")
        notes = ["containerd: restart it to stop running the hook; remove /opt/tessera only after that"] \
            if removed else []
    lines = [f"removed {p}" for p in removed] + uninstall_toolkit_switch(root)
    if not lines:
        return [f"note: nothing of Tessera's found for {runtime} under {root}"]
    return lines + [f"note: {n}" for n in notes]
