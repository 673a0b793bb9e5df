"""``tessera inventory``: this node's GPUs through the NVML layer, as a table or JSON.

With a fake node description (a file or a shipped name) the fake NVML is installed first, so the
listing is what a device plugin on that node would read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from tessera.gpu import GpuInfo, GpuSample
from tessera.table import render_table


def read_node(description: Path | None) -> tuple[list[GpuInfo], list[GpuSample]]:
    """Read every GPU and one sample of each, from the driver or from a fake node description."""
    from tessera.nvml import Nvml

    installed = False
    if description is not None:
        from tessera.fakenvml import install

        install(description)
        installed = True
    try:
        with Nvml() as nvml:
            return nvml.read_gpus(), nvml.sample_gpus()
    finally:
        if installed:
            from tessera.fakenvml import uninstall

            uninstall()


def gpu_rows(gpus: list[GpuInfo], samples: list[GpuSample]) -> list[list[object]]:
    """One row per GPU, and one per MIG instance under it."""
    rows: list[list[object]] = []
    for gpu, sample in zip(gpus, samples):
        if gpu.error:
            rows.append([gpu.index, gpu.name or "?", gpu.uuid or "?", "", "", "", f"ERROR: {gpu.error}"])
            continue
        used = f"{sample.memory_used_mib}/{gpu.memory_total_mib}" if sample.healthy else "?"
        mig = f"{len(gpu.mig_instances)} instances" if gpu.mig_enabled else "off"
        rows.append([gpu.index, gpu.name, gpu.uuid, used, gpu.sm_count, gpu.numa_node, f"MIG {mig}"])
        for m in gpu.mig_instances:
            rows.append(["", f"  {m.profile}", m.uuid, f"-/{m.memory_mib}", m.sm_count, "",
                         f"gi {m.gpu_instance_id} slot {m.placement_start}+{m.placement_size}"])
        for p in sample.processes:
            where = f"on {p.mig_uuid}" if p.mig_uuid else ""
            rows.append(["", f"  pid {p.pid}", where, f"{p.used_memory_mib}/-", "", "",
                         "MPS client" if p.mps_client else "process"])
    return rows


GPU_HEADERS = ("GPU", "MODEL", "UUID", "MEM MiB used/total", "SMs", "NUMA", "NOTES")


def print_inventory(node: str | None, as_json: bool = False) -> int:
    """Entry of ``tessera inventory``: print the node's GPUs; 1 with one clear line on failure."""
    from tessera.gpu import NvmlUnavailable
    from tessera.log import configure_logging

    configure_logging("warning", stream=sys.stderr)  # stdout is for the listing
    try:
        node = node or os.environ.get("TESSERA_FAKE_NVML") or None
        if node:
            from tessera.fakenvml import resolve_node_description

            description = resolve_node_description(node)
        else:
            description = None
        gpus, samples = read_node(description)
    except (NvmlUnavailable, ValueError) as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"gpus": [dataclasses.asdict(g) for g in gpus],
                          "samples": [dataclasses.asdict(s) for s in samples]}, indent=2))
    else:
        print(render_table(GPU_HEADERS, gpu_rows(gpus, samples),
                           title=f"{len(gpus)} GPU(s) on {description or 'this node'}"))
    return 0
