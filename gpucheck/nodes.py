"""Device nodes as the check looks at them: where one is under the device root, and what it is."""

from __future__ import annotations

import os
import stat

from tessera.hostdevices import host_device_path

__all__ = ["node_numbers"]


def node_numbers(device_root: str, path: str) -> tuple[int, int] | str:
    """(major, minor) of the character device at ``path`` under ``device_root``, or why there is none."""
    host = host_device_path(device_root, path)
    try:
        st = os.stat(host)
    except OSError as err:
        return f"{host}: {err.strerror}"
    if not stat.S_ISCHR(st.st_mode):
        return f"{host} is not a character device"
    return os.major(st.st_rdev), os.minor(st.st_rdev)
