"""A stand-in ``nvidia-smi`` for the dry run: ``-q -x`` and ``--query-gpu=... --format=csv,noheader,nounits``
printed from Tessera's fake NVML node (``TESSERA_FAKE_NVML``), so every comparison of the check runs on CPU.

Static fields come from the node description (UUID, minor number, bus, NUMA, MIG, memory), moving
ones from the fake node's state through the fake's NVML functions. ``GPUCHECK_FAKESMI_OVERRIDE``
(``field=value;field=value``, field names as in ``-q -x`` (``minor_number``, ``memory_total``) or
``--query-gpu`` (``temperature.gpu``)) makes it print a different value for every GPU: the tests use
it to break one comparison on purpose. Run as ``python -m gpucheck.fakesmi ARGS``.
"""

from __future__ import annotations

import os
import sys
from xml.sax.saxutils import escape

import pynvml

from tessera.log import configure_logging
from tessera.nvml import Nvml

OVERRIDE_ENV = "GPUCHECK_FAKESMI_OVERRIDE"
MIB = 1 << 20
# Fields real nvidia-smi knows that the fake cannot answer: printed as [N/A], as nvidia-smi does
NOT_SERVED = frozenset({"temperature.memory", "retired_pages.sbe", "retired_pages.dbe"})


def overrides() -> dict[str, str]:
    """The test's overrides: field name -> text to print instead."""
    pairs = (item.partition("=") for item in os.environ.get(OVERRIDE_ENV, "").split(";") if "=" in item)
    return {k.strip(): v.strip() for k, _, v in pairs}


def _state():
    from tessera.fakenvml import installed_node

    node = installed_node()
    if node is None:
        raise SystemExit("fakesmi: TESSERA_FAKE_NVML names no fake node")
    return node


def _gpu_xml(gpu, handle, changed: dict[str, str]) -> str:
    spec = gpu.spec
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    fields = {
        "product_name": spec.model.nvml_name, "uuid": spec.uuid, "minor_number": str(spec.minor),
        "numa_node_id": str(spec.numa_node), "memory_total": f"{mem.total // MIB} MiB",
        "memory_reserved": f"{spec.model.reserved_mib} MiB", "memory_used": f"{mem.used // MIB} MiB",
        "mig_current": ("Enabled" if spec.mig_enabled else "Disabled") if spec.model.mig_capable else "N/A",
        "pci_bus_id": spec.pci_bus_id,
    }
    fields.update((k, v) for k, v in changed.items() if k in fields)
    e = {k: escape(v) for k, v in fields.items()}
    return (f'  <gpu id="{e["pci_bus_id"]}">\n'
            f'    <product_name>{e["product_name"]}</product_name>\n'
            f'    <mig_mode><current_mig>{e["mig_current"]}</current_mig><pending_mig>{e["mig_current"]}'
            f'</pending_mig></mig_mode>\n'
            f'    <uuid>{e["uuid"]}</uuid>\n    <minor_number>{e["minor_number"]}</minor_number>\n'
            f'    <pci><pci_bus_id>{e["pci_bus_id"]}</pci_bus_id></pci>\n'
            f'    <fb_memory_usage><total>{e["memory_total"]}</total><reserved>{e["memory_reserved"]}</reserved>'
            f'<used>{e["memory_used"]}</used></fb_memory_usage>\n'
            f'    <numa_node_id>{e["numa_node_id"]}</numa_node_id>\n  </gpu>\n')


def print_log(nvml: Nvml) -> None:
    """``-q -x``."""
    node, changed = _state(), overrides()
    desc = node.description
    out = ['<?xml version="1.0" ?>\n<nvidia_smi_log>\n',
           f"  <driver_version>{escape(changed.get('driver_version', desc.driver_version))}</driver_version>\n",
           f"  <cuda_version>{escape(changed.get('cuda_version', desc.cuda_version))}</cuda_version>\n",
           f"  <attached_gpus>{len(node.gpus)}</attached_gpus>\n"]
    for index, gpu in enumerate(node.gpus):
        out.append(_gpu_xml(gpu, pynvml.nvmlDeviceGetHandleByIndex(index), changed))
    out.append("</nvidia_smi_log>\n")
    sys.stdout.write("".join(out))


def _optional(fn, *args):
    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def _query_value(name: str, handle, reserved_mib: int) -> str | None:
    """One --query-gpu field from the fake; None where this stand-in does not know the field."""
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    util = _optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
    readers = {
        "uuid": lambda: pynvml.nvmlDeviceGetUUID(handle),
        "temperature.gpu": lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        "power.draw": lambda: f"{pynvml.nvmlDeviceGetPowerUsage(handle) / 1000:.2f}",
        "utilization.gpu": lambda: util.gpu if util else None,
        "utilization.memory": lambda: util.memory if util else None,
        "memory.used": lambda: mem.used // MIB, "memory.free": lambda: mem.free // MIB,
        "memory.total": lambda: mem.total // MIB,
        "clocks.sm": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
        "clocks.mem": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
    }
    ecc = {f"ecc.errors.{kind}.{counter}.total": (k, c)
           for kind, k in (("corrected", pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                           ("uncorrected", pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED))
           for counter, c in (("volatile", pynvml.NVML_VOLATILE_ECC), ("aggregate", pynvml.NVML_AGGREGATE_ECC))}
    readers.update({n: (lambda kc=kc: pynvml.nvmlDeviceGetTotalEccErrors(handle, *kc)) for n, kc in ecc.items()})
    readers.update({
        "utilization.encoder": lambda: pynvml.nvmlDeviceGetEncoderUtilization(handle)[0],
        "utilization.decoder": lambda: pynvml.nvmlDeviceGetDecoderUtilization(handle)[0],
        "remapped_rows.correctable": lambda: pynvml.nvmlDeviceGetRemappedRows(handle)[0],
        "remapped_rows.uncorrectable": lambda: pynvml.nvmlDeviceGetRemappedRows(handle)[1],
        "memory.reserved": lambda: reserved_mib,
    })
    if name in NOT_SERVED:
        return "[N/A]"
    if name not in readers:
        return None
    value = _optional(readers[name])
    return "[N/A]" if value is None else str(value)


def print_query(spec: str) -> int:
    """``--query-gpu=a,b,c`` as CSV without header or units; exit 2 on a field it does not know."""
    names = [n for n in spec.split(",") if n]
    changed, node = overrides(), _state()
    lines = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        row = []
        for name in names:
            value = changed.get(name) or _query_value(name, handle, node.gpus[index].spec.model.reserved_mib)
            if value is None:
                sys.stderr.write(f'Field "{name}" is not a valid field to query.\n')
                return 2
            row.append(value)
        lines.append(", ".join(row))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def main(argv: list[str]) -> int:
    """nvidia-smi's two invocations the check uses."""
    configure_logging(level="warning", fmt="json", stream=sys.stderr)  # stdout is nvidia-smi's answer
    with Nvml() as nvml:
        if argv[:2] == ["-q", "-x"]:
            print_log(nvml)
            return 0
        query = next((a.split("=", 1)[1] for a in argv if a.startswith("--query-gpu=")), None)
        if query is not None:
            return print_query(query)
    sys.stderr.write(f"fakesmi: only -q -x and --query-gpu=... are served (asked {argv})\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
