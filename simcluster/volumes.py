"""Mounted ConfigMap and Secret volumes as the kubelet writes them (its "atomic writer").

Each version of the files goes into a folder of its own (``..<version>``); ``..data`` is a symlink to
the current one, replaced in one rename, and each key is a symlink ``<key> -> ..data/<key>``. A reader
that opens ``<key>`` sees the old text or the new, never half of one, and a key taken out of the
ConfigMap disappears with the swap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def project(volume: Path, version: str, fill: Callable[[Path], None]) -> Path:
    """Write one version of a mounted volume: ``fill(folder)`` writes its files into ``..<version>``,
    then ``..data`` is swapped to it and each key's symlink made (and stale ones removed). The folder."""
    volume.mkdir(parents=True, exist_ok=True)
    data = volume / f"..{version}"
    data.mkdir()
    fill(data)
    link = volume / "..data_tmp"
    os.symlink(data.name, link)
    os.replace(link, volume / "..data")
    keys = {p.name for p in data.iterdir()}
    for key in keys:
        if not (volume / key).is_symlink():
            os.symlink(f"..data/{key}", volume / key)
    for entry in volume.iterdir():
        if not entry.name.startswith("..") and entry.is_symlink() and entry.name not in keys:
            entry.unlink()
    return data


def project_texts(volume: Path, version: str, texts: dict[str, str]) -> Path:
    """:func:`project` of a ConfigMap's keys and texts."""
    def fill(folder: Path) -> None:
        for key, text in texts.items():
            (folder / key).write_text(text)

    return project(volume, version, fill)
