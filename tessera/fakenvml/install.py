"""Putting the fake in place of the driver: pynvml's own functions are replaced, then restored.

Code that calls ``pynvml.nvmlDeviceGetUUID(...)`` runs unchanged on the fake: the name it looks
up on the pynvml module now answers from a fake node. So does Tessera's one reader of the driver's
``/proc/driver`` files (:func:`tessera.migcaps.read_driver_file`), from
:func:`tessera.fakenvml.driverfiles.proc_files`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pynvml

from tessera import migcaps
from tessera.fakenvml.description import NodeDescription, load_description
from tessera.fakenvml.driverfiles import proc_files
from tessera.fakenvml.functions import FUNCTION_NAMES, FakeFunctions
from tessera.fakenvml.state import FakeNode
from tessera.log import get_logger

log = get_logger("fakenvml")

_lock = threading.Lock()
_originals: dict[str, object] = {}
_installed: FakeFunctions | None = None
_DRIVER_FILE_READER = "tessera.migcaps.read_driver_file"


def install(description: str | Path | NodeDescription) -> FakeNode:
    """Replace pynvml's functions with a fake node's; a second install replaces the first."""
    global _installed
    desc = description if isinstance(description, NodeDescription) else load_description(description)
    node = FakeNode(desc)
    fake = FakeFunctions(node)
    with _lock:
        if _installed is not None:
            _restore()
        for name in FUNCTION_NAMES:
            _originals[name] = getattr(pynvml, name)
            setattr(pynvml, name, getattr(fake, name))
        _originals[_DRIVER_FILE_READER] = migcaps.read_driver_file
        migcaps.read_driver_file = proc_files(desc).get
        _installed = fake
    log.info("fake_nvml_installed", node=desc.node, gpus=len(desc.gpus), source=desc.source)
    return node


def uninstall() -> None:
    """Put pynvml's real functions back (nothing happens when no fake is installed)."""
    global _installed
    with _lock:
        if _installed is not None:
            _restore()
            _installed = None


def installed_node() -> FakeNode | None:
    """The fake node pynvml answers from, or None when pynvml talks to the real driver."""
    return _installed.node if _installed is not None else None


def _restore() -> None:
    migcaps.read_driver_file = _originals.pop(_DRIVER_FILE_READER)
    for name, original in _originals.items():
        setattr(pynvml, name, original)
    _originals.clear()
