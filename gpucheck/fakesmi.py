"""A stand-in ``nvidia-smi`` for the dry run: ``-q -x`` and ``--query-gpu=... --format=csv,noheader,nounits``
printed from Tessera's fake NVML node (``TESSERA_FAKE_NVML``), so every comparison of the check runs on CPU.

Static fields come from the node description (UUID, minor number, bus, NUMA, MIG, memory), moving
ones from the fake node's state as Tessera's NVML layer samples it (only tessera/nvml.py and its
helpers call pynvml). ``GPUCHECK_FAKESMI_OVERRIDE``
(``field=value;field=value``, field names as in ``-q -x`` (``minor_number``, ``memory_total``) or
``--query-gpu`` (``temperature.gpu``)) makes it print a different value for every GPU: the tests use
it to break one comparison on purpose. Run as ``python -m gpucheck.fakesmi ARGS``.
"""

from __future__ import annotations

import os
import sys
from xml.sax.saxutils import escape

from tessera.gpu import GpuSample
from tessera.log import configure_logging
from tessera.nvml import Nvml

OVERRIDE_ENV = "GPUCHECK_FAKESMI_OVERRIDE"
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


def _gpu_xml(gpu, sample: GpuSample, changed: dict[str, str]) -> str:
    spec = gpu.spec
    fields = {
        "product_name": spec.model.nvml_name, "uuid": spec.uuid, "minor_number": str(spec.minor),
        "numa_node_id": str(spec.numa_node), "memory_total": f"{spec.model.memory_mib} MiB",
        "memory_reserved": f"{spec.model.reserved_mib} MiB", "memory_used": f"{sample.memory_used_mib} MiB",
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


def print_log(samples: list[GpuSample]) -> None:
    """``-q -x``."""
    node, changed = _state(), overrides()
    desc = node.description
    out = ['<?xml version="1.0" ?>\n<nvidia_smi_log>\n',
           f"  <driver_version>{escape(changed.get('driver_version', desc.driver_version))}</driver_version>\n",
           f"  <cuda_version>{escape(changed.get('cuda_version', desc.cuda_version))}</cuda_version>\n",
           f"  <attached_gpus>{len(node.gpus)}</attached_gpus>\n"]
    out += [_gpu_xml(gpu, sample, changed) for gpu, sample in zip(node.gpus, samples)]
    out.append("</nvidia_smi_log>\n")
    sys.stdout.write("".join(out))


def _readers(s: GpuSample, spec) -> dict[str, object]:
    """--query-gpu field -> value for one GPU (None: N/A)."""
    c, ecc, repair = s.counters, s.ecc, s.repair
    return {
        "uuid": s.uuid, "temperature.gpu": s.temperature_c,
        "power.draw": None if s.power_w is None else f"{s.power_w:.2f}",
        "utilization.gpu": s.gpu_util_pct, "utilization.memory": s.memory_util_pct,
        "memory.used": s.memory_used_mib, "memory.free": s.memory_free_mib, "memory.total": spec.model.memory_mib,
        "memory.reserved": spec.model.reserved_mib, "clocks.sm": s.sm_clock_mhz,
        "clocks.mem": c and c.memory_clock_mhz, "utilization.encoder": c and c.encoder_util_pct,
        "utilization.decoder": c and c.decoder_util_pct,
        "ecc.errors.corrected.volatile.total": ecc and ecc.volatile_corrected,
        "ecc.errors.uncorrected.volatile.total": ecc and ecc.volatile_uncorrected,
        "ecc.errors.corrected.aggregate.total": ecc and ecc.aggregate_corrected,
        "ecc.errors.uncorrected.aggregate.total": ecc and ecc.aggregate_uncorrected,
        "remapped_rows.correctable": repair and repair.remapped_rows_correctable,
        "remapped_rows.uncorrectable": repair and repair.remapped_rows_uncorrectable,
        **{name: None for name in NOT_SERVED},
    }


def print_query(spec: str, samples: list[GpuSample]) -> int:
    """``--query-gpu=a,b,c`` as CSV without header or units; exit 2 on a field it does not know."""
    names = [n for n in spec.split(",") if n]
    changed, node = overrides(), _state()
    lines = []
    for gpu, sample in zip(node.gpus, samples):
        values = _readers(sample, gpu.spec)
        row = []
        for name in names:
            if name not in values and name not in changed:
                sys.stderr.write(f'Field "{name}" is not a valid field to query.\n')
                return 2
            value = changed.get(name, values.get(name))
            row.append("[N/A]" if value is None else str(value))
        lines.append(", ".join(row))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def main(argv: list[str]) -> int:
    """nvidia-smi's two invocations the check uses."""
    configure_logging(level="warning", fmt="json", stream=sys.stderr)  # stdout is nvidia-smi's answer
    with Nvml() as nvml:
        samples = nvml.sample_gpus()
    if argv[:2] == ["-q", "-x"]:
        print_log(samples)
        return 0
    query = next((a.split("=", 1)[1] for a in argv if a.startswith("--query-gpu=")), None)
    if query is not None:
        return print_query(query, samples)
    sys.stderr.write(f"fakesmi: only -q -x and --query-gpu=... are served (asked {argv})\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
