"""The driver's files outside NVML on a fake node: its ``/proc/driver`` entries and its device nodes.

As the real driver makes them:

- ``/proc/driver/nvidia-caps/mig-minors``: the static table of every MIG capability's device
  minor, for GPU minors 0..31, GPU instances 0..14 and compute instances 0..7, whether or not
  such an instance exists (``config 1``, ``monitor 2``, then ``gpu<m>/gi<g>/access`` and
  ``gpu<m>/gi<g>/ci<c>/access`` in order from 3). Keyed by the GPU's minor number, not its index.
- ``/proc/driver/nvidia/capabilities/gpu<m>/mig/gi<g>/access`` and ``.../ci<c>/access``: one per
  existing GPU and compute instance, ``DeviceFileMinor: <N>`` naming ``/dev/nvidia-caps/nvidia-cap<N>``;
  ``.../capabilities/mig/config`` and ``.../mig/monitor`` for cap1 and cap2.
- Device nodes: ``/dev/nvidia<minor>`` per GPU (195), ``nvidiactl`` (195:255), ``nvidia-uvm`` and
  ``nvidia-uvm-tools`` and ``nvidia-caps/nvidia-cap<N>`` (dynamic majors; fixed numbers here, as no
  driver registered any), caps for config, monitor and every existing instance.
"""

from __future__ import annotations

from tessera.fakenvml.description import NodeDescription
from tessera.migcaps import MIG_MINORS_PATH, capability_device
from tessera.topology import numa_node_path

NVIDIA_MAJOR, NVIDIACTL_MINOR = 195, 255
UVM_MAJOR = 510  # dynamic on a real node (/proc/devices names it nvidia-uvm)
CAPS_MAJOR = 509  # dynamic on a real node (/proc/devices names it nvidia-caps)
CAPS_TABLE_GPUS, CAPS_TABLE_GIS, CAPS_TABLE_CIS = 32, 15, 8
CONFIG_CAP, MONITOR_CAP = 1, 2
CAPABILITIES = "/proc/driver/nvidia/capabilities"
_ACCESS_MODE = {"config": 256, "monitor": 292, "instance": 292}  # 0400, 0444, 0444: as the driver sets them


def gi_capability_minor(gpu_minor: int, gpu_instance_id: int) -> int:
    """The nvidia-caps minor of ``gpu<m>/gi<g>/access`` in the driver's table."""
    return 3 + (gpu_minor * CAPS_TABLE_GIS + gpu_instance_id) * (1 + CAPS_TABLE_CIS)


def ci_capability_minor(gpu_minor: int, gpu_instance_id: int, compute_instance_id: int) -> int:
    """The nvidia-caps minor of ``gpu<m>/gi<g>/ci<c>/access``."""
    return gi_capability_minor(gpu_minor, gpu_instance_id) + 1 + compute_instance_id


def mig_minors_text() -> str:
    """``/proc/driver/nvidia-caps/mig-minors``: the same on every node, MIG or not."""
    lines = [f"config {CONFIG_CAP}", f"monitor {MONITOR_CAP}"]
    for gpu in range(CAPS_TABLE_GPUS):
        for gi in range(CAPS_TABLE_GIS):
            lines.append(f"gpu{gpu}/gi{gi}/access {gi_capability_minor(gpu, gi)}")
            lines += [f"gpu{gpu}/gi{gi}/ci{ci}/access {ci_capability_minor(gpu, gi, ci)}"
                      for ci in range(CAPS_TABLE_CIS)]
    return "\n".join(lines) + "\n"


def _access(minor: int, kind: str) -> str:
    return f"DeviceFileMinor: {minor}\nDeviceFileMode: {_ACCESS_MODE[kind]}\nDeviceFileModify: 1\n"


def _instance_capabilities(description: NodeDescription) -> list[tuple[str, int]]:
    """(capability file, caps minor) for every existing GPU and compute instance (one CI per GI here)."""
    found = []
    for gpu in description.gpus:
        for mig in gpu.mig:
            gi = mig.gpu_instance_id
            base = f"{CAPABILITIES}/gpu{gpu.minor}/mig/gi{gi}"
            found.append((f"{base}/access", gi_capability_minor(gpu.minor, gi)))
            found.append((f"{base}/ci0/access", ci_capability_minor(gpu.minor, gi, 0)))
    return found


def proc_files(description: NodeDescription) -> dict[str, str]:
    """Absolute path -> text, for the driver's ``/proc`` files above and each GPU's ``numa_node`` in ``/sys``."""
    files = {MIG_MINORS_PATH: mig_minors_text(),
             f"{CAPABILITIES}/mig/config": _access(CONFIG_CAP, "config"),
             f"{CAPABILITIES}/mig/monitor": _access(MONITOR_CAP, "monitor")}
    files.update((path, _access(minor, "instance")) for path, minor in _instance_capabilities(description))
    files.update((numa_node_path(gpu.pci_bus_id), f"{gpu.numa_node}\n") for gpu in description.gpus)
    return files


def device_nodes(description: NodeDescription) -> list[tuple[str, int, int]]:
    """(absolute /dev path, major, minor) of every device node the driver would make on this node."""
    nodes = [(f"/dev/nvidia{gpu.minor}", NVIDIA_MAJOR, gpu.minor) for gpu in description.gpus]
    nodes += [("/dev/nvidiactl", NVIDIA_MAJOR, NVIDIACTL_MINOR), ("/dev/nvidia-uvm", UVM_MAJOR, 0),
              ("/dev/nvidia-uvm-tools", UVM_MAJOR, 1)]
    caps = [CONFIG_CAP, MONITOR_CAP] + [minor for _, minor in _instance_capabilities(description)]
    # Instances made later (tessera.fakenvml.miglifecycle) need theirs too: on a real node the driver's
    # nvidia-caps module makes them as instances appear; here every GPU instance id's GI and CI 0 node is
    # made up front on a GPU in MIG mode.
    caps += sorted({minor for gpu in description.gpus if gpu.mig_enabled for gi in range(1, CAPS_TABLE_GIS)
                    for minor in (gi_capability_minor(gpu.minor, gi), ci_capability_minor(gpu.minor, gi, 0))}
                   - set(caps))
    nodes += [(capability_device(minor), CAPS_MAJOR, minor) for minor in caps]
    return nodes
