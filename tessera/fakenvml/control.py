"""Fault injection into a fake node, from this process or any other.

Faults travel through a control file: one JSON command per line, appended. Every process that
runs the fake NVML for that node description reads new lines on its next NVML call (a cheap
size check), so a test can break a GPU under a device plugin running in another process.

The control file lies beside the description (``<description>.control.jsonl``), or in the
directory named by ``TESSERA_FAKE_NVML_CONTROL`` when the description's folder is read-only
(the shipped ones): every process of one fake node must see the same setting.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pynvml

from tessera.fakenvml.description import NodeDescription, load_description

if TYPE_CHECKING:
    from tessera.fakenvml.state import FakeNode

CONTROL_DIR_ENV = "TESSERA_FAKE_NVML_CONTROL"


def control_path_for(description_path: str | Path) -> Path:
    """Where the control file of a node description lives."""
    path = Path(description_path).resolve()
    folder = os.environ.get(CONTROL_DIR_ENV)
    name = path.name + ".control.jsonl"
    return Path(folder) / name if folder else path.with_name(name)


ProcessArg = tuple[int, int] | tuple[int, int, int] | dict


def _check_pct(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise ValueError(f"{name} {value!r} is not a percentage 0..100")


class FaultInjector:
    """Writes faults and workload changes for the fake node described at ``description_path``.

    Arguments are checked against the description here, so a bad injection fails in the caller
    and never reaches the node.
    """

    def __init__(self, description_path: str | Path) -> None:
        self.description: NodeDescription = load_description(description_path)
        self.control_path = control_path_for(description_path)
        self._node: FakeNode | None = None   # the node as the control file has it, read on first need

    def inject_xid(self, gpu_index: int, xid: int, gpu_instance_id: int | None = None) -> None:
        """An Xid error on a GPU (optionally attributed to one of its MIG GPU instances)."""
        gpu = self._gpu(gpu_index)
        if gpu_instance_id is not None:
            self._gi(gpu, gpu_instance_id)
        if not isinstance(xid, int) or xid < 1:
            raise ValueError(f"xid {xid!r} is not a positive Xid number")
        self._write({"op": "xid", "gpu": gpu_index, "xid": xid, "gi": gpu_instance_id})

    def lose_gpu(self, gpu_index: int) -> None:
        """The GPU falls off the bus: its NVML calls fail with GPU_IS_LOST and Xid 79 is delivered."""
        self._gpu(gpu_index)
        self._write({"op": "lose", "gpu": gpu_index})

    def fail_gpu(self, gpu_index: int, error: str = "UNKNOWN") -> None:
        """Every NVML call on the GPU fails with ``NVML_ERROR_<error>`` (no event is delivered)."""
        self._gpu(gpu_index)
        code = getattr(pynvml, f"NVML_ERROR_{error.upper()}", None)
        if not isinstance(code, int):
            raise ValueError(f"NVML_ERROR_{error.upper()} is not an NVML error code")
        self._write({"op": "fail", "gpu": gpu_index, "code": code})

    def restore_gpu(self, gpu_index: int) -> None:
        """The GPU answers again (reset, back on the bus)."""
        self._gpu(gpu_index)
        self._write({"op": "restore", "gpu": gpu_index})

    def set_processes(self, gpu_index: int, processes: Iterable[ProcessArg],
                      gpu_instance_id: int | None = None, mps: bool = False) -> None:
        """Replace the compute processes on a GPU (or on one of its MIG GPU instances).

        Each process is ``(pid, used_mib)``, ``(pid, used_mib, sm_util_pct)`` or ``{"pid": ...,
        "used_mib": ..., "mps": bool, "sm_util": pct, "mem_util": pct}``; ``mps=True`` marks them all as
        MPS clients. Memory used follows the processes; ``sm_util``/``mem_util`` (default 0) is what
        ``nvmlDeviceGetProcessUtilization`` reports for the process (not on MIG devices, as on real ones).
        """
        gpu = self._gpu(gpu_index)
        if gpu_instance_id is not None:
            self._gi(gpu, gpu_instance_id)
        elif gpu.mig_enabled:
            raise ValueError(f"GPU {gpu_index} is in MIG mode: name the gpu_instance_id the processes run in")
        rows = []
        for p in processes:
            if isinstance(p, (tuple, list)):
                pid, used, is_mps, sm, mem = p[0], p[1], mps, (p[2] if len(p) > 2 else 0), 0
            else:
                pid, used, is_mps = p.get("pid"), p.get("used_mib"), bool(p.get("mps", mps))
                sm, mem = p.get("sm_util", 0), p.get("mem_util", 0)
            if not isinstance(pid, int) or pid < 1 or not isinstance(used, int) or used < 0:
                raise ValueError(f"process {p!r} is not (pid > 0, used MiB >= 0)")
            _check_pct(f"process {pid} sm_util", sm)
            _check_pct(f"process {pid} mem_util", mem)
            rows.append({"pid": pid, "used_mib": used, "mps": is_mps, "sm_util": sm, "mem_util": mem})
        limit = gpu.model.memory_mib if gpu_instance_id is None else self._gi(gpu, gpu_instance_id).profile.memory_mib
        if sum(r["used_mib"] for r in rows) > limit:
            raise ValueError(f"processes use more than the {limit} MiB there are on GPU {gpu_index}")
        self._write({"op": "processes", "gpu": gpu_index, "gi": gpu_instance_id, "processes": rows})

    def set_utilization(self, gpu_index: int, gpu_pct: int, mem_pct: int = 0, *, gpu_instance_id: int | None = None,
                        sm_occupancy_pct: int | None = None) -> None:
        """The utilization NVML reports, in percent: of the GPU, or of one of its MIG GPU instances.

        ``gpu_pct`` and ``mem_pct`` are what ``nvmlDeviceGetUtilizationRates`` reports (not in MIG mode)
        and GPM's graphics/SM and DRAM-bandwidth utilization (H100); ``sm_occupancy_pct`` is GPM's SM
        occupancy, the same as ``gpu_pct`` unless given. A GPU instance has only GPM figures; the whole
        MIG GPU's GPM figures are its instances' averaged over compute slices.
        """
        gpu = self._gpu(gpu_index)
        if gpu_instance_id is not None:
            self._gi(gpu, gpu_instance_id)
        for name, value in (("gpu_pct", gpu_pct), ("mem_pct", mem_pct)):
            _check_pct(name, value)
        if sm_occupancy_pct is not None:
            _check_pct("sm_occupancy_pct", sm_occupancy_pct)
        self._write({"op": "utilization", "gpu": gpu_index, "gpu_pct": gpu_pct, "mem_pct": mem_pct,
                     "gi": gpu_instance_id, "occupancy_pct": sm_occupancy_pct})

    def inject_ecc(self, gpu_index: int, corrected: int = 0, uncorrected: int = 0) -> None:
        """ECC errors: counters grow, events are delivered, an uncorrected error retires a page
        (Volta/Turing) or remaps a row (Ampere and later)."""
        self._gpu(gpu_index)
        if min(corrected, uncorrected) < 0 or corrected + uncorrected == 0:
            raise ValueError("inject at least one corrected or uncorrected ECC error, none negative")
        self._write({"op": "ecc", "gpu": gpu_index, "corrected": corrected, "uncorrected": uncorrected})

    def reset(self) -> None:
        """Forget every injected fault and workload: the node is as described again."""
        self.control_path.parent.mkdir(parents=True, exist_ok=True)
        fresh = self.control_path.with_name(self.control_path.name + f".{os.getpid()}.tmp")
        fresh.write_text("")
        os.replace(fresh, self.control_path)  # a new file: readers see the change and start over
        self._node = None   # read the new file afresh, whatever inode number it was given

    def _gpu(self, index: int):
        gpus = self.description.gpus
        if not isinstance(index, int) or not 0 <= index < len(gpus):
            raise ValueError(f"GPU index {index!r} is not on node {self.description.node} (0..{len(gpus) - 1})")
        return gpus[index]

    def _gi(self, gpu, gpu_instance_id: int):
        """The GPU instance as the node has it now: laid out by the description or made since."""
        node = self._live_node()
        with node.lock:   # another thread of this injector may be bringing the same node up to date
            live = node.gpus[gpu.index]
            placed = live.gpu_instance(gpu_instance_id)
            if placed is None:
                ids = ", ".join(str(p.gpu_instance_id) for p in live.gpu_instances()) or "none"
                raise ValueError(f"GPU {gpu.index} has no MIG GPU instance {gpu_instance_id} (has: {ids})")
            return placed

    def _live_node(self) -> FakeNode:
        """The node as its control file has it now: the one read before, brought up to date with the
        lines written since (FakeNode starts over by itself when the file was replaced), or a fresh one
        when there is none yet or the file is gone (refresh would keep the old state then)."""
        from tessera.fakenvml.state import FakeNode   # state imports this module

        if self._node is None or not self.control_path.exists():
            self._node = FakeNode(self.description)
        else:
            self._node.refresh(deliver=False)   # nobody listens on this copy: no events to deliver
        return self._node

    def _write(self, command: dict) -> None:
        append_command(self.control_path, command)


def append_command(control_path: Path, command: dict) -> None:
    """Append one command to a node's control file, stamped with the time, in one write."""
    command["ts"] = time.time()
    line = (json.dumps(command, sort_keys=True) + "\n").encode()
    control_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(control_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of one line: appends from several writers do not interleave
    finally:
        os.close(fd)
