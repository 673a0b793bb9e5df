"""What ``nvidia-smi`` says, the check's independent witness: ``-q -x`` (XML) per GPU and
``--query-gpu`` (CSV) values.

A field nvidia-smi does not know makes the whole ``--query-gpu`` call fail, so a refused query is
asked again field by field and the refused fields are named, never guessed.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SmiGpu", "SmiLog", "query_gpus", "read_log"]

TIMEOUT_S = 30.0
# What nvidia-smi prints in place of a value: "N/A" in -q -x, "[N/A]" and "[Not Supported]" in --query-gpu CSV
# (captures of H100/H200 on driver 590.48.01, utkuozdemir/nvidia_gpu_exporter internal/captures/)
NOT_A_VALUE = frozenset({"", "N/A", "[N/A]", "Not Supported", "[Not Supported]"})


@dataclass(frozen=True)
class SmiGpu:
    """One ``<gpu>`` of ``nvidia-smi -q -x``: the raw text of the fields the check compares."""

    fields: dict[str, str]
    # its <mig_devices>: (gpu_instance_id, compute_instance_id) -> the MIG device's multiprocessor_count text
    mig_devices: dict[tuple[int, int], str | None] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        """A field's text, None where nvidia-smi did not print it (or printed N/A)."""
        value = self.fields.get(name)
        return None if value is None or value.strip() in NOT_A_VALUE else value.strip()


@dataclass(frozen=True)
class SmiLog:
    """The whole ``-q -x`` answer."""

    driver_version: str | None
    cuda_version: str | None
    gpus: list[SmiGpu] = field(default_factory=list)


# field name -> path inside <gpu>. What real ``nvidia-smi -q -x`` prints (DTD nvsmi_device_v12/v13, drivers
# 535-590; checked against a captured A100-SXM4-80GB log of driver 535.54.03, tests/gpucheck/fixtures/, and the
# element list telegraf's nvidia_smi plugin parses, plugins/inputs/nvidia_smi/schema_v13/types.go): the GPU's
# UUID, minor number, pci/pci_bus_id (8-digit domain, upper-case hex: "00000000:01:00.0"), fb_memory_usage
# total and reserved ("81920 MiB"), mig_mode/current_mig ("Enabled", "Disabled", "N/A"). It prints no NUMA
# node, no SM count for a whole GPU (only mig_devices/mig_device/device_attributes/shared/multiprocessor_count
# per MIG device) and no compute capability (``--query-gpu=compute_cap`` has it).
_GPU_PATHS = {
    "product_name": "product_name",
    "uuid": "uuid",
    "minor_number": "minor_number",
    "pci_bus_id": "pci/pci_bus_id",
    "memory_total": "fb_memory_usage/total",
    "memory_reserved": "fb_memory_usage/reserved",
    "mig_current": "mig_mode/current_mig",
}


def _run(smi: Path, args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(smi), *args], capture_output=True, text=True, timeout=timeout_s)


def read_log(smi: Path, timeout_s: float = TIMEOUT_S) -> SmiLog:
    """``nvidia-smi -q -x`` parsed; RuntimeError with nvidia-smi's words when it fails."""
    result = _run(smi, ["-q", "-x"], timeout_s)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines() or ["(nothing)"]
        raise RuntimeError(f"nvidia-smi -q -x exited {result.returncode}: {said[-1]}")
    root = ET.fromstring(result.stdout)
    gpus = []
    for gpu in root.findall("gpu"):
        fields = {name: node.text for name, path in _GPU_PATHS.items()
                  if (node := gpu.find(path)) is not None and node.text is not None}
        gpus.append(SmiGpu(fields, _mig_devices(gpu)))
    return SmiLog(root.findtext("driver_version"), root.findtext("cuda_version"), gpus)


def _mig_devices(gpu: ET.Element) -> dict[tuple[int, int], str | None]:
    found = {}
    for dev in gpu.findall("mig_devices/mig_device"):
        try:
            key = (int(dev.findtext("gpu_instance_id", "")), int(dev.findtext("compute_instance_id", "")))
        except ValueError:
            continue
        found[key] = dev.findtext("device_attributes/shared/multiprocessor_count")
    return found


def _values(line: str) -> list[str]:
    return [v.strip() for v in line.split(",")]


def query_gpus(smi: Path, names: list[str],
               timeout_s: float = TIMEOUT_S) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """``--query-gpu=uuid,<names>`` per GPU UUID -> {field: text}; and the refused fields -> why."""
    def ask(fields: list[str]) -> subprocess.CompletedProcess:
        return _run(smi, [f"--query-gpu=uuid,{','.join(fields)}", "--format=csv,noheader,nounits"], timeout_s)

    result = ask(names)
    if result.returncode == 0:
        return _rows(result.stdout, names), {}
    found: dict[str, dict[str, str]] = {}
    refused: dict[str, str] = {}
    for name in names:
        one = ask([name])
        if one.returncode != 0:
            refused[name] = (one.stderr or one.stdout).strip().splitlines()[0] if (one.stderr or one.stdout).strip() \
                else f"exit status {one.returncode}"
            continue
        for uuid, row in _rows(one.stdout, [name]).items():
            found.setdefault(uuid, {}).update(row)
    return found, refused


def _rows(text: str, names: list[str]) -> dict[str, dict[str, str]]:
    rows = {}
    for line in text.strip().splitlines():
        values = _values(line)
        if len(values) == len(names) + 1:
            rows[values[0]] = dict(zip(names, values[1:]))
    return rows


def number(text: str | None) -> float | None:
    """A value nvidia-smi printed, as a number: ``81559 MiB`` -> 81559.0; None for N/A or words."""
    if text is None:
        return None
    head = text.strip().split(" ")[0]
    try:
        return float(head)
    except ValueError:
        return None
