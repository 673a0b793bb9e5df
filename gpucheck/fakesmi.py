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
import time
from xml.sax.saxutils import escape

from tessera.gpu import GpuSample
from tessera.log import configure_logging
from tessera.nvml import Nvml

OVERRIDE_ENV = "GPUCHECK_FAKESMI_OVERRIDE"
# Fields real nvidia-smi knows that the fake cannot answer: printed as [N/A], as nvidia-smi does (retired
# pages are [N/A] on a real H100 and H200, which remap rows instead: captures of driver 590.48.01 in
# utkuozdemir/nvidia_gpu_exporter internal/captures/)
NOT_SERVED = frozenset({"retired_pages.sbe", "retired_pages.dbe"})
# What a real H100/H200 in MIG mode prints [N/A] for (the same captures' "-mig" files)
NOT_IN_MIG_MODE = frozenset({"utilization.gpu", "utilization.memory", "utilization.encoder", "utilization.decoder",
                             "remapped_rows.correctable", "remapped_rows.uncorrectable"})


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


def _mig_xml(spec) -> str:
    """``<mig_devices>`` as nvidia-smi 535 prints it for a GPU in MIG mode (one compute instance, id 0, per
    GPU instance here)."""
    if not spec.mig_enabled:
        return ""
    devices = "".join(
        f"\t\t\t<mig_device>\n\t\t\t\t<index>{i}</index>\n"
        f"\t\t\t\t<gpu_instance_id>{m.gpu_instance_id}</gpu_instance_id>\n"
        f"\t\t\t\t<compute_instance_id>0</compute_instance_id>\n"
        f"\t\t\t\t<device_attributes>\n\t\t\t\t\t<shared>\n"
        f"\t\t\t\t\t\t<multiprocessor_count>{m.placed.profile.sm_count}</multiprocessor_count>\n"
        f"\t\t\t\t\t</shared>\n\t\t\t\t</device_attributes>\n"
        f"\t\t\t\t<fb_memory_usage>\n\t\t\t\t\t<total>{m.placed.profile.memory_mib} MiB</total>\n"
        f"\t\t\t\t</fb_memory_usage>\n\t\t\t</mig_device>\n"
        for i, m in enumerate(spec.mig))
    return f"\t\t<mig_devices>\n{devices}\t\t</mig_devices>\n"


def _gpu_xml(gpu, sample: GpuSample, changed: dict[str, str]) -> str:
    """One ``<gpu>`` with the elements, nesting, order and text forms of real ``nvidia-smi -q -x`` (a
    captured A100-SXM4-80GB log of driver 535.54.03: tests/gpucheck/fixtures/), trimmed to what the check
    reads and a few neighbours. Real nvidia-smi prints no NUMA node and no whole-GPU SM count."""
    spec = gpu.spec
    fields = {
        "product_name": spec.model.nvml_name, "uuid": spec.uuid, "minor_number": str(spec.minor),
        "memory_total": f"{spec.model.memory_mib} MiB", "memory_reserved": f"{spec.model.reserved_mib} MiB",
        "memory_used": f"{sample.memory_used_mib} MiB",
        "mig_current": ("Enabled" if spec.mig_enabled else "Disabled") if spec.model.mig_capable else "N/A",
        "pci_bus_id": spec.pci_bus_id,
    }
    fields.update((k, v) for k, v in changed.items() if k in fields)
    e = {k: escape(v) for k, v in fields.items()}
    domain, bus_no, rest = spec.pci_bus_id.split(":")
    return (f'\t<gpu id="{escape(spec.pci_bus_id)}">\n'
            f'\t\t<product_name>{e["product_name"]}</product_name>\n'
            f'\t\t<product_brand>NVIDIA</product_brand>\n'
            f'\t\t<mig_mode>\n\t\t\t<current_mig>{e["mig_current"]}</current_mig>\n'
            f'\t\t\t<pending_mig>{e["mig_current"]}</pending_mig>\n\t\t</mig_mode>\n'
            f'{_mig_xml(spec)}'
            f'\t\t<uuid>{e["uuid"]}</uuid>\n'
            f'\t\t<minor_number>{e["minor_number"]}</minor_number>\n'
            f'\t\t<pci>\n\t\t\t<pci_bus>{bus_no}</pci_bus>\n\t\t\t<pci_device>{rest.split(".")[0]}</pci_device>\n'
            f'\t\t\t<pci_domain>{domain[-4:]}</pci_domain>\n'
            f'\t\t\t<pci_device_id>{spec.model.pci_device_id:08X}</pci_device_id>\n'
            f'\t\t\t<pci_bus_id>{e["pci_bus_id"]}</pci_bus_id>\n\t\t</pci>\n'
            f'\t\t<fb_memory_usage>\n\t\t\t<total>{e["memory_total"]}</total>\n'
            f'\t\t\t<reserved>{e["memory_reserved"]}</reserved>\n\t\t\t<used>{e["memory_used"]}</used>\n'
            f'\t\t</fb_memory_usage>\n'
            f'\t\t<compute_mode>Default</compute_mode>\n\t</gpu>\n')


def print_log(samples: list[GpuSample]) -> None:
    """``-q -x``: the XML declaration, the DOCTYPE line and root elements as the real tool prints them."""
    node, changed = _state(), overrides()
    desc = node.description
    out = ['<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">\n<nvidia_smi_log>\n',
           f"\t<timestamp>{time.strftime('%a %b %e %H:%M:%S %Y')}</timestamp>\n",
           f"\t<driver_version>{escape(changed.get('driver_version', desc.driver_version))}</driver_version>\n",
           f"\t<cuda_version>{escape(changed.get('cuda_version', desc.cuda_version))}</cuda_version>\n",
           f"\t<attached_gpus>{len(node.gpus)}</attached_gpus>\n"]
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
        "clocks.mem": c and c.memory_clock_mhz, "temperature.memory": c and c.memory_temperature_c,
        "utilization.encoder": c and c.encoder_util_pct,
        "utilization.decoder": c and c.decoder_util_pct,
        "ecc.errors.corrected.volatile.total": ecc and ecc.volatile_corrected,
        "ecc.errors.uncorrected.volatile.total": ecc and ecc.volatile_uncorrected,
        "ecc.errors.corrected.aggregate.total": ecc and ecc.aggregate_corrected,
        "ecc.errors.uncorrected.aggregate.total": ecc and ecc.aggregate_uncorrected,
        "remapped_rows.correctable": repair and repair.remapped_rows_correctable,
        "remapped_rows.uncorrectable": repair and repair.remapped_rows_uncorrectable,
        "compute_cap": "{}.{}".format(*spec.model.compute_capability),
        **{name: None for name in NOT_SERVED},
        **{name: None for name in (NOT_IN_MIG_MODE if spec.mig_enabled else ())},
    }


def print_query(spec: str, samples: list[GpuSample]) -> int:
    """``--query-gpu=a,b,c`` as CSV without header or units; a field it does not know is named on stdout, where
    the real tool names it too (nvidia_gpu_exporter's replaying fake, from real runs), with a non-zero exit
    (the real status is not verified here: 2 is what this stand-in uses)."""
    names = [n for n in spec.split(",") if n]
    changed, node = overrides(), _state()
    lines = []
    for gpu, sample in zip(node.gpus, samples):
        values = _readers(sample, gpu.spec)
        row = []
        for name in names:
            if name not in values and name not in changed:
                sys.stdout.write(f'Field "{name}" is not a valid field to query.\n\n')
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
