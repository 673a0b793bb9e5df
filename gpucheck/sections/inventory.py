"""Inventory: Tessera's NVML layer against ``nvidia-smi -q -x`` field by field, and the device nodes the
device plugin would hand out checked to exist with the minor numbers nvidia-smi gives."""

from __future__ import annotations

from pathlib import Path

from deviceplugin.devicenodes import device_paths
from deviceplugin.rm import RequestError, gpu_devices
from gpucheck.nodes import node_numbers
from gpucheck.section import CheckContext, SectionReport
from gpucheck.smi import NOT_A_VALUE, SmiGpu, number, query_gpus, read_log
from tessera.gpu import GpuInfo
from tessera.hostdevices import CONTROL_NODES
from tessera.nvml import Nvml
from tessera.topology import bus

TITLE = "Inventory: NVML layer against nvidia-smi -q -x, and device nodes"
# open-gpu-kernel-modules kernel-open/common/inc/nv-chardev-numbers.h: major 195, minors 0-247 for GPUs,
# 254 nvidia-modeset, 255 the control device (nvidiactl); nvidia-uvm and nvidia-caps take dynamic majors
NVIDIA_MAJOR, NVIDIACTL_MINOR = 195, 255


def _numa_from_sysfs(sysfs: str, pci: str) -> int | None:
    """The kernel's NUMA node of the PCI device (sysfs wants the 4-digit domain, lower case); None for -1."""
    try:
        node = int((Path(sysfs) / "bus/pci/devices" / pci[4:].lower() / "numa_node").read_text())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


def _compare_gpu(report: SectionReport, gpu: GpuInfo, smi: SmiGpu, sysfs: str) -> None:
    who = f"GPU {gpu.index}"
    report.expect(f"{who} UUID", gpu.uuid == smi.get("uuid"), f"NVML {gpu.uuid}, nvidia-smi {smi.get('uuid')}")
    smi_minor = smi.get("minor_number")
    report.expect(f"{who} minor number", smi_minor is not None and gpu.minor_number == int(smi_minor),
                  f"NVML {gpu.minor_number}, nvidia-smi {smi_minor}")
    total, reserved = number(smi.get("memory_total")), number(smi.get("memory_reserved")) or 0
    ok = total is not None and abs(gpu.memory_total_mib - total) <= reserved + 1
    report.expect(f"{who} memory total", ok, f"NVML {gpu.memory_total_mib} MiB, nvidia-smi {smi.get('memory_total')} "
                  f"(reserved {reserved:.0f} MiB allowed as the difference)", nvml_mib=gpu.memory_total_mib,
                  smi_mib=total)
    report.not_checked(f"{who} SM count", f"nvidia-smi prints no SM count for a whole GPU (NVML says "
                       f"{gpu.sm_count})", nvml=gpu.sm_count)
    smi_bus = smi.get("pci_bus_id")
    report.expect(f"{who} PCI bus id", smi_bus is not None and bus(smi_bus) == gpu.pci_bus_id,
                  f"NVML {gpu.pci_bus_id}, nvidia-smi {smi_bus}")
    _compare_numa(report, who, gpu, sysfs)
    mig = smi.get("mig_current")
    expected = None if mig is None else mig.lower() == "enabled"
    report.expect(f"{who} MIG mode", expected is None and not gpu.mig_enabled or expected == gpu.mig_enabled,
                  f"NVML {'enabled' if gpu.mig_enabled else 'disabled'} (capable: {gpu.mig_capable}), "
                  f"nvidia-smi {mig or 'N/A'}")
    for inst in gpu.mig_instances if gpu.mig_enabled else ():
        key = (inst.gpu_instance_id, inst.compute_instance_id)
        name = f"{who} MIG device GI {key[0]} CI {key[1]} SM count"
        if key not in smi.mig_devices:
            report.failed(name, f"nvidia-smi lists no MIG device GI {key[0]} CI {key[1]} (it lists "
                          f"{sorted(smi.mig_devices)})")
        else:
            report.expect(name, smi.mig_devices[key] == str(inst.sm_count),
                          f"NVML {inst.sm_count}, nvidia-smi {smi.mig_devices[key]}")


def _compare_compute_capability(report: SectionReport, gpu: GpuInfo, said: str | None, refused: str | None) -> None:
    name = f"GPU {gpu.index} compute capability"
    mine = None if gpu.compute_capability is None else "{}.{}".format(*gpu.compute_capability)
    if refused or said is None or said in NOT_A_VALUE:
        report.not_checked(name, f"nvidia-smi --query-gpu=compute_cap: {refused or 'no answer'} (NVML says {mine})")
        return
    report.expect(name, mine == said, f"NVML {mine}, nvidia-smi compute_cap {said}")


def _compare_numa(report: SectionReport, who: str, gpu: GpuInfo, sysfs: str) -> None:
    """nvidia-smi prints no NUMA node (``-q`` has none; ``topo -m``'s "GPU NUMA ID" is the GPU's own memory
    node on Grace Hopper, N/A on x86), so the witness is the kernel's: the CPU side's node of the PCI device.
    NVML's nvmlDeviceGetNumaNodeId answers only "where the GPUs are NUMA nodes" (NVML API docs)."""
    witness = _numa_from_sysfs(sysfs, gpu.pci_bus_id)
    if witness is None:
        report.not_checked(f"{who} NUMA node", f"sysfs has no NUMA node for {gpu.pci_bus_id} (NVML layer says "
                           f"{gpu.numa_node}); nvidia-smi prints none")
        return
    report.expect(f"{who} NUMA node", gpu.numa_node == witness, f"NVML layer {gpu.numa_node}, sysfs numa_node "
                  f"{witness}", nvml=gpu.numa_node, sysfs=witness)


def _check_nodes(report: SectionReport, gpu: GpuInfo, smi: SmiGpu, root: str) -> None:
    who = f"GPU {gpu.index}"
    mode = "mig" if gpu.mig_enabled else "exclusive"
    try:
        paths = sorted({p for d in gpu_devices(gpu, mode, 1) for p in device_paths((d,))})
    except RequestError as err:
        report.failed(f"{who} device nodes", f"the plugin cannot name them: {err}")
        return
    minor = smi.get("minor_number")
    gpu_node = f"/dev/nvidia{minor}"
    report.expect(f"{who} device node named by minor number", gpu_node in paths,
                  f"plugin hands out {[p for p in paths if p not in CONTROL_NODES]}, nvidia-smi minor {minor}")
    for path in paths:
        found = node_numbers(root, path)
        if isinstance(found, str):
            hint = "" if "uvm" not in path else (
                " (the driver makes the nvidia-uvm nodes when the nvidia-uvm module loads: the first CUDA program "
                "or nvidia-modprobe -u -c=0; a container runtime hook does it too)")
            report.failed(f"{who} {path}", f"missing: {found}{hint}")
            continue
        if path == gpu_node:
            ok = found == (NVIDIA_MAJOR, int(minor))
        elif path == "/dev/nvidiactl":
            ok = found == (NVIDIA_MAJOR, NVIDIACTL_MINOR)
        else:
            ok = True  # nvidia-uvm*, nvidia-caps: dynamic majors; existing as a char device is the check
        report.expect(f"{who} {path}", ok, f"char device {found[0]}:{found[1]}", major=found[0], minor=found[1])


def run(ctx: CheckContext) -> SectionReport:
    """The inventory section."""
    report = SectionReport(TITLE)
    log = read_log(ctx.smi, timeout_s=min(30.0, ctx.budget_s))
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
        driver, cuda = nvml.driver_version(), nvml.cuda_version()
    report.expect("driver version", driver == log.driver_version, f"NVML {driver}, nvidia-smi {log.driver_version}")
    report.expect("CUDA version", cuda == log.cuda_version, f"NVML {cuda}, nvidia-smi {log.cuda_version}")
    report.expect("GPU count", len(gpus) == len(log.gpus), f"NVML {len(gpus)}, nvidia-smi {len(log.gpus)}")
    caps, refused = query_gpus(ctx.smi, ["compute_cap"], timeout_s=min(30.0, ctx.budget_s))
    by_uuid = {g.get("uuid"): g for g in log.gpus}
    for gpu in gpus:
        if gpu.error:
            report.failed(f"GPU {gpu.index} read", f"NVML could not read it: {gpu.error}")
            continue
        smi = by_uuid.get(gpu.uuid) or (log.gpus[gpu.index] if gpu.index < len(log.gpus) else None)
        if smi is None:
            report.failed(f"GPU {gpu.index} in nvidia-smi", f"nvidia-smi lists no GPU {gpu.uuid}")
            continue
        _compare_gpu(report, gpu, smi, ctx.sysfs_root)
        _compare_compute_capability(report, gpu, caps.get(gpu.uuid, {}).get("compute_cap"), refused.get("compute_cap"))
        if ctx.device_root is None:
            report.not_checked(f"GPU {gpu.index} device nodes", "no device nodes here (the dry run could not make "
                               "them: not root)")
        else:
            _check_nodes(report, gpu, smi, ctx.device_root)
    return report
