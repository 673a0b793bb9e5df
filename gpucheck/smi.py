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


@dataclass(frozen=True)
class SmiGpu:
    """One ``<gpu>`` of ``nvidia-smi -q -x``: the raw text of the fields the check compares."""

    fields: dict[str, str]

    def get(self, name: str) -> str | None:
        """A field's text, None where nvidia-smi did not print it (or printed N/A)."""
        value = self.fields.get(name)
        return None if value is None or value.strip() in ("", "N/A", "[N/A]") else value.strip()


@dataclass(frozen=True)
class SmiLog:
    """The whole ``-q -x`` answer."""

    driver_version: str | None
    cuda_version: str | None
    gpus: list[SmiGpu] = field(default_factory=list)


# field name -> path inside <gpu> (the first that exists wins)
_GPU_PATHS = {
    "product_name": ("product_name",),
    "uuid": ("uuid",),
    "minor_number": ("minor_number",),
    "pci_bus_id": ("pci/pci_bus_id",),
    "memory_total": ("fb_memory_usage/total",),
    "memory_reserved": ("fb_memory_usage/reserved",),
    "numa_node": ("numa_node_id", "gpu_numa_id", "numa_node"),
    "mig_current": ("mig_mode/current_mig",),
    "sm_count": ("multiprocessor_count", "sm_count"),
    "compute_cap": ("cuda_compute_capability",),
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
        fields = {}
        for name, paths in _GPU_PATHS.items():
            for path in paths:
                node = gpu.find(path)
                if node is not None and node.text is not None:
                    fields[name] = node.text
                    break
        gpus.append(SmiGpu(fields))
    return SmiLog(root.findtext("driver_version"), root.findtext("cuda_version"), gpus)


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
