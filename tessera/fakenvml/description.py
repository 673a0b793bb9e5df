"""Node description files: what GPUs a fake node has, read from YAML or JSON and validated.

Example (every key but ``node`` and ``gpus`` optional)::

    node: dgx-a100-01
    driver_version: "550.54.15"
    cuda_version: "12.4"
    nvlink: all-to-all            # default for SXM models; "none"; or [{gpus: [0, 1], links: 4}, ...]
    pcie_switches: [[0, 1], [2, 3]]   # GPUs behind one PCIe switch; default pairs 0-1, 2-3, ... on one NUMA node
    minor_numbers: [2, 3, 0, 1, 6, 7, 4, 5]   # each GPU's device minor (/dev/nvidia<minor>); default its index
    gpus:
      - model: A100-SXM4-80GB     # catalog key or NVML name
        count: 4
        mode: mig                 # Tessera mode hint: exclusive|mig|mps|timeslice (NVML ignores it)
        mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]   # or [{profile: 3g.40gb, start: 4}]
      - model: A100-SXM4-80GB
        count: 4
        numa: 1

UUIDs and PCI bus ids are derived from the node name and GPU index, so a description always
produces the same identities. The index is NVML's (PCI bus order); the minor number is the order
the kernel driver probed the GPUs in, which need not agree (nor be 0..N-1): NVIDIA's device plugin
opens ``/dev/nvidia<minor>``, and the MIG capability files are per minor too.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera import GPU_MODES
from tessera.fakenvml.catalog import GpuModel, find_model
from tessera.fakenvml.placement import MigLayoutError, PlacedInstance, place_layout
from tessera.fakenvml.topology import LinkEnd, build_links, build_switches
from tessera.yamlfile import YamlFileError, read_yaml_file

_NAMESPACE = uuid.UUID("5a1e4d2c-7f3b-4c8e-9a61-0d7e3c2b1f90")
_DGX_BUSES = (0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD)
MAX_GPUS = 32
MAX_GPU_MINOR = 253  # 254 and 255 are the driver's nvidia-modeset and nvidiactl
_TOP_KEYS = {"node", "gpus", "driver_version", "cuda_version", "nvlink", "pcie_switches", "minor_numbers"}
_GPU_KEYS = {"model", "count", "mode", "mig", "numa"}


class DescriptionError(ValueError):
    """A node description that cannot be used; the message names the bad key and value."""


@dataclass(frozen=True)
class MigSpec:
    """A MIG instance on a described GPU, with its identities."""

    placed: PlacedInstance
    uuid: str

    @property
    def gpu_instance_id(self) -> int:
        """The GPU-instance id."""
        return self.placed.gpu_instance_id


@dataclass(frozen=True)
class GpuSpec:
    """One described GPU."""

    index: int
    model: GpuModel
    uuid: str
    minor: int  # the device minor: /dev/nvidia<minor>
    pci_bus_id: str
    numa_node: int
    mode: str | None
    mig_enabled: bool
    mig: tuple[MigSpec, ...]


@dataclass(frozen=True)
class NodeDescription:
    """A whole fake node: its GPUs, their NVLink wiring, and driver versions."""

    node: str
    driver_version: str
    cuda_version: str
    gpus: tuple[GpuSpec, ...]
    links: tuple[tuple[LinkEnd, ...], ...]  # per GPU, per NVLink link: its remote end
    source: str = "<memory>"
    switches: tuple[int | None, ...] = ()  # per GPU, the PCIe switch it sits behind (None: its own)

    @property
    def cuda_version_int(self) -> int:
        """The CUDA version as NVML encodes it: 12.4 -> 12040."""
        major, minor = self.cuda_version.split(".")
        return int(major) * 1000 + int(minor) * 10


def load_description(path: str | Path) -> NodeDescription:
    """Read and validate a node description file (YAML or JSON)."""
    try:
        doc = read_yaml_file(path, "YAML or JSON")
    except YamlFileError as err:
        raise DescriptionError(f"{path}: {'cannot read node description: ' if err.unreadable else ''}{err}") from None
    return parse_description(doc, source=str(path))


def parse_description(doc: Any, source: str = "<memory>") -> NodeDescription:
    """Validate a node description already parsed into dicts and lists."""
    def fail(msg: str) -> DescriptionError:
        return DescriptionError(f"{source}: {msg}")

    if not isinstance(doc, dict):
        raise fail("a node description is a mapping with keys node, gpus, ...")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(_TOP_KEYS))}")
    node = doc.get("node")
    if not isinstance(node, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", node):
        raise fail(f"node: {node!r} is not a node name (lowercase letters, digits, '-' and '.')")
    driver = str(doc.get("driver_version", "550.54.15"))
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", driver):
        raise fail(f"driver_version: {driver!r} is not a version like 550.54.15")
    cuda = str(doc.get("cuda_version", "12.4"))
    if not re.fullmatch(r"\d+\.\d", cuda):
        raise fail(f"cuda_version: {cuda!r} is not a version like 12.4")
    groups = doc.get("gpus")
    if not isinstance(groups, list) or not groups:
        raise fail("gpus: a non-empty list of GPU entries is required")
    entries = _expand_groups(groups, fail)
    if len(entries) > MAX_GPUS:
        raise fail(f"gpus: {len(entries)} GPUs described, at most {MAX_GPUS} per node")
    minors = _minor_numbers(doc.get("minor_numbers"), len(entries), fail)
    gpus = tuple(_gpu_spec(node, i, where, e, len(entries), minors[i], fail) for i, (where, e) in enumerate(entries))
    try:
        links = build_links([g.model for g in gpus], doc.get("nvlink"))
    except ValueError as err:
        raise fail(f"nvlink: {err}") from None
    try:
        switches = build_switches([g.numa_node for g in gpus], doc.get("pcie_switches"))
    except ValueError as err:
        raise fail(f"pcie_switches: {err}") from None
    return NodeDescription(node, driver, cuda, gpus, links, source, switches)


def _expand_groups(groups: list, fail) -> list[tuple[str, dict]]:
    entries: list[tuple[str, dict]] = []
    for g, group in enumerate(groups):
        where = f"gpus[{g}]"
        if not isinstance(group, dict):
            raise fail(f"{where}: each GPU entry is a mapping with at least 'model'")
        unknown = sorted(set(group) - _GPU_KEYS)
        if unknown:
            raise fail(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(_GPU_KEYS))}")
        count = group.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise fail(f"{where}.count: {count!r} is not a positive whole number")
        entries.extend((where, group) for _ in range(count))
    return entries


def _minor_numbers(value: Any, total: int, fail) -> list[int]:
    if value is None:
        return list(range(total))
    if not isinstance(value, list) or len(value) != total:
        raise fail(f"minor_numbers: {value!r} is not a list of {total} minor numbers, one per GPU")
    for minor in value:
        if not isinstance(minor, int) or isinstance(minor, bool) or not 0 <= minor <= MAX_GPU_MINOR:
            raise fail(f"minor_numbers: {minor!r} is not a GPU minor number 0..{MAX_GPU_MINOR}")
    if len(set(value)) != total:
        raise fail(f"minor_numbers: {value!r} gives two GPUs one minor number")
    return value


def _gpu_spec(node: str, index: int, where: str, entry: dict, total: int, minor: int, fail) -> GpuSpec:
    try:
        model = find_model(str(entry.get("model", "")))
    except ValueError as err:
        raise fail(f"{where}.model: {err}") from None
    mode = entry.get("mode")
    if mode is not None and mode not in GPU_MODES:
        raise fail(f"{where}.mode: {mode!r} is not one of {', '.join(GPU_MODES)}")
    numa = entry.get("numa", 0 if total == 1 or index < total // 2 else 1)
    if not isinstance(numa, int) or isinstance(numa, bool) or numa < 0:
        raise fail(f"{where}.numa: {numa!r} is not a NUMA node number")
    layout = entry.get("mig")
    mig_enabled = layout is not None or mode == "mig"
    if mig_enabled and not model.mig_capable:
        raise fail(f"{where}: {model.key} does not support MIG (mode {mode!r}, mig {layout!r})")
    if layout is not None and mode not in (None, "mig"):
        raise fail(f"{where}: a mig layout is given but mode is {mode!r}; MIG GPUs are in mode 'mig'")
    gpu_uuid = "GPU-" + str(uuid.uuid5(_NAMESPACE, f"{node}/gpu/{index}"))
    mig: tuple[MigSpec, ...] = ()
    if layout:
        wanted = _parse_layout(layout, f"{where}.mig", fail)
        try:
            placed = place_layout(model, wanted, f"{where}.mig (GPU {index})")
        except MigLayoutError as err:
            raise fail(str(err)) from None
        mig = tuple(
            MigSpec(p, "MIG-" + str(uuid.uuid5(_NAMESPACE, f"{node}/gpu/{index}/gi/{p.gpu_instance_id}")))
            for p in placed
        )
    return GpuSpec(index, model, gpu_uuid, minor, pci_bus_id(index), numa, mode, mig_enabled, mig)


def _parse_layout(layout: Any, where: str, fail) -> list[tuple[str, int | None]]:
    if not isinstance(layout, list):
        raise fail(f"{where}: a list of MIG profiles like [3g.40gb, 1g.10gb]")
    wanted: list[tuple[str, int | None]] = []
    for k, item in enumerate(layout):
        if isinstance(item, str):
            wanted.append((item, None))
        elif isinstance(item, dict) and isinstance(item.get("profile"), str) and set(item) <= {"profile", "start"}:
            start = item.get("start")
            if start is not None and (not isinstance(start, int) or isinstance(start, bool)):
                raise fail(f"{where}[{k}].start: {start!r} is not a memory-slice number")
            wanted.append((item["profile"], start))
        else:
            raise fail(f"{where}[{k}]: {item!r} is neither a profile name nor {{profile: ..., start: ...}}")
    return wanted


def pci_bus_id(index: int) -> str:
    """The PCI bus id NVML reports for GPU ``index`` of a fake node (DGX A100 bus numbers first)."""
    bus = _DGX_BUSES[index] if index < len(_DGX_BUSES) else 0x20 + index
    return f"00000000:{bus:02X}:00.0"
