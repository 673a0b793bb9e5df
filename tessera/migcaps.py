"""MIG capability device nodes: the ``/dev/nvidia-caps/nvidia-cap<N>`` a MIG device is opened through.

A process uses a MIG device through its GPU's node (``/dev/nvidia<minor>``) plus two capability
nodes: one for the GPU instance, one for the compute instance. The driver lists every capability's
device minor in ``/proc/driver/nvidia-caps/mig-minors``, one per line::

    config 1
    monitor 2
    gpu0/gi0/access 3
    gpu0/gi0/ci0/access 4
    ...

where ``gpu<m>`` is the GPU's device minor number, not its NVML index. NVIDIA's device plugin reads
this table (``internal/mig/mig-dp.go``) and passes, for a MIG device, the parent's node and the GI
and CI capability nodes; the ``config`` and ``monitor`` capabilities (cap1, cap2) are for MIG
administration and monitoring, not for workloads, and are not passed.
"""

from __future__ import annotations

import re

MIG_MINORS_PATH = "/proc/driver/nvidia-caps/mig-minors"
CAPS_DEVICE_DIR = "/dev/nvidia-caps"
_ACCESS_LINE = re.compile(r"gpu(\d+)/gi(\d+)(?:/ci(\d+))?/access (\d+)")

# (GPU minor, GPU-instance id, compute-instance id or None for the GI's own capability) -> device minor
MigMinors = dict[tuple[int, int, int | None], int]


def read_driver_file(path: str) -> str | None:
    """The text of one of the driver's ``/proc`` files (or the kernel's ``/sys`` file of a GPU's PCI device),
    None where it does not exist or cannot be read.

    The fake NVML answers in its place on a fake node (:func:`tessera.fakenvml.install`).
    """
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def parse_mig_minors(text: str) -> MigMinors:
    """The GI and CI access lines of a ``mig-minors`` table (other lines, as NVIDIA's plugin does, skipped)."""
    table: MigMinors = {}
    for line in text.splitlines():
        match = _ACCESS_LINE.fullmatch(line.strip())
        if match:
            gpu, gi, ci, minor = match.groups()
            table[(int(gpu), int(gi), None if ci is None else int(ci))] = int(minor)
    return table


def read_mig_minors() -> MigMinors | None:
    """The driver's MIG capability table; None where the driver has none (no nvidia-caps module)."""
    text = read_driver_file(MIG_MINORS_PATH)
    return None if text is None else parse_mig_minors(text)


def instance_capabilities(table: MigMinors, gpu_minor: int, gpu_instance_id: int,
                          compute_instance_id: int) -> tuple[int, int] | None:
    """The (GI, CI) capability device minors of one MIG device; None where the table lacks either."""
    gi = table.get((gpu_minor, gpu_instance_id, None))
    ci = table.get((gpu_minor, gpu_instance_id, compute_instance_id))
    return None if gi is None or ci is None else (gi, ci)


def capability_device(minor: int) -> str:
    """``/dev/nvidia-caps/nvidia-cap<minor>``."""
    return f"{CAPS_DEVICE_DIR}/nvidia-cap{minor}"
