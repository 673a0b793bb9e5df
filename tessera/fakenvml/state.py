"""The live state of a fake node: workloads, faults, counters and event queues.

It starts as the description says (idle GPUs, no errors) and changes only by commands read from
the node's control file. Commands already in the file when the fake starts set the state but
deliver no events (they happened before anyone listened); later ones deliver events to the event
sets registered at that moment, as the real driver does.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pynvml

from tessera.fakenvml.control import append_command, control_path_for
from tessera.fakenvml.description import GpuSpec, MigSpec, NodeDescription
from tessera.fakenvml.migstate import apply_mig_command
from tessera.fakenvml.placement import PlacedInstance
from tessera.log import get_logger

log = get_logger("fakenvml")

XID_GPU_FALLEN_OFF_BUS = 79
NO_INSTANCE = 0xFFFFFFFF  # gpuInstanceId / computeInstanceId of an event not tied to one
RETIRED_PAGE_BASE = 0x1_0000_0000


@dataclass
class FakeProcess:
    """A compute process on a fake GPU."""

    pid: int
    used_mib: int
    gpu_instance_id: int | None
    mps: bool
    sm_util: int = 0  # what nvmlDeviceGetProcessUtilization reports for it, in percent
    mem_util: int = 0


@dataclass(frozen=True)
class Activity:
    """What a GPU or one of its GPU instances is doing, as injected: percentages."""

    gpu: int = 0
    mem: int = 0
    sm_occupancy: int | None = None  # None: the same as ``gpu`` (the fake's stand-in)


@dataclass
class GpuState:
    """What can change on one fake GPU."""

    spec: GpuSpec
    error_code: int | None = None
    processes: list[FakeProcess] = field(default_factory=list)
    gpu_util: int = 0
    mem_util: int = 0
    sm_occupancy: int | None = None
    gi_activity: dict[int, Activity] = field(default_factory=dict)  # MIG GPU-instance id -> its activity
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    retired_pages: list[int] = field(default_factory=list)  # double-bit retirements (pre-Ampere)
    retirement_pending: bool = False
    remapped_uncorrectable: int = 0  # row remapping (Ampere and later)
    remap_pending: bool = False
    mig: list[MigSpec] = field(default_factory=list)  # MIG devices now: GPU instances with their compute instance
    bare_gis: dict[int, PlacedInstance] = field(default_factory=dict)  # GPU instances made without one yet
    energy_mj: float = 0.0  # since the driver loaded (advanced on each read, at the power drawn meanwhile)
    nvlink_kib: float = 0.0  # NVLink data moved since the driver loaded
    counted_at: float | None = None  # time.monotonic() of the last advance

    def __post_init__(self) -> None:
        self.mig = list(self.spec.mig)

    def gpu_instance(self, gpu_instance_id: int) -> PlacedInstance | None:
        """The GPU instance ``gpu_instance_id`` (with or without its compute instance), None if absent."""
        for m in self.mig:
            if m.gpu_instance_id == gpu_instance_id:
                return m.placed
        return self.bare_gis.get(gpu_instance_id)

    def gpu_instances(self) -> list[PlacedInstance]:
        """Every GPU instance on the GPU now."""
        return [m.placed for m in self.mig] + list(self.bare_gis.values())

    def used_mib(self, gpu_instance_id: int | None = None) -> int:
        """Memory the processes hold, on the GPU or one GPU instance."""
        return sum(p.used_mib for p in self.processes
                   if gpu_instance_id is None or p.gpu_instance_id == gpu_instance_id)


@dataclass
class EventSet:
    """A registered event set: which GPUs report which event types, and what is waiting."""

    registrations: dict[int, int] = field(default_factory=dict)  # GPU index -> event type mask
    queue: deque = field(default_factory=deque)  # (gpu index, event type, data, gi, ci)


class FakeNode:
    """One fake node's state, kept current from its control file; safe to use from many threads."""

    def __init__(self, description: NodeDescription) -> None:
        self.description = description
        self.lock = threading.RLock()
        self.gpus = [GpuState(g) for g in description.gpus]
        self.event_sets: dict[int, EventSet] = {}
        self.control_path: Path | None = (
            control_path_for(description.source) if description.source != "<memory>" else None
        )
        self._offset = 0
        self._inode: int | None = None
        self.refresh(deliver=False)

    def refresh(self, deliver: bool = True) -> None:
        """Apply control-file lines written since the last look (a stat when nothing changed)."""
        if self.control_path is None:
            return
        try:
            st = os.stat(self.control_path)
        except FileNotFoundError:
            return
        with self.lock:
            if st.st_ino != self._inode or st.st_size < self._offset:
                if self._inode is not None:
                    self._reset()
                self._inode, self._offset = st.st_ino, 0
            if st.st_size == self._offset:
                return
            with open(self.control_path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            self._offset += len(complete)
            for line in complete.splitlines():
                if line.strip():
                    self._apply_line(line, deliver)

    def command(self, cmd: dict) -> None:
        """Change the node for every process of it: append ``cmd`` to the control file and apply what
        is new there (this command, and any another process wrote first); a node read from memory
        applies it at once. A command the state does not allow is logged and skipped, as in every reader."""
        with self.lock:
            if self.control_path is None:
                self._apply_line(json.dumps(cmd).encode(), True)
                return
            append_command(self.control_path, cmd)
            self.refresh()

    def _reset(self) -> None:
        self.gpus = [GpuState(g) for g in self.description.gpus]

    def _apply_line(self, line: bytes, deliver: bool) -> None:
        try:
            cmd = json.loads(line)
            self.apply(cmd, deliver)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            log.warning("fault_command_rejected", line=line.decode(errors="replace")[:200], reason=str(err))

    def apply(self, cmd: dict, deliver: bool = True) -> None:
        """Apply one command (see :class:`tessera.fakenvml.control.FaultInjector`)."""
        op, gpu = cmd["op"], self.gpus[int(cmd["gpu"])]
        index = gpu.spec.index
        if op == "xid":
            gi = cmd.get("gi")
            if deliver:
                self._deliver(index, pynvml.nvmlEventTypeXidCriticalError, int(cmd["xid"]),
                              NO_INSTANCE if gi is None else gi, NO_INSTANCE if gi is None else 0)
        elif op == "lose":
            if deliver and gpu.error_code is None:
                self._deliver(index, pynvml.nvmlEventTypeXidCriticalError, XID_GPU_FALLEN_OFF_BUS,
                              NO_INSTANCE, NO_INSTANCE)
            gpu.error_code = pynvml.NVML_ERROR_GPU_IS_LOST
        elif op == "fail":
            gpu.error_code = int(cmd["code"])
        elif op == "restore":
            gpu.error_code = None
        elif op == "processes":
            gi = cmd.get("gi")
            kept = [p for p in gpu.processes if gi is not None and p.gpu_instance_id != gi]
            new = [FakeProcess(int(p["pid"]), int(p["used_mib"]), gi, bool(p.get("mps")), int(p.get("sm_util", 0)),
                               int(p.get("mem_util", 0))) for p in cmd["processes"]]
            gpu.processes = kept + new
        elif op == "utilization":
            occupancy = None if cmd.get("occupancy_pct") is None else int(cmd["occupancy_pct"])
            if cmd.get("gi") is None:
                gpu.gpu_util, gpu.mem_util, gpu.sm_occupancy = int(cmd["gpu_pct"]), int(cmd["mem_pct"]), occupancy
            else:
                gpu.gi_activity[int(cmd["gi"])] = Activity(int(cmd["gpu_pct"]), int(cmd["mem_pct"]), occupancy)
        elif op == "ecc":
            self._ecc(gpu, int(cmd["corrected"]), int(cmd["uncorrected"]), deliver)
        elif op in ("create_gi", "create_ci", "destroy_ci", "destroy_gi"):
            apply_mig_command(gpu, cmd)
        else:
            raise ValueError(f"unknown op {op!r}")

    def _ecc(self, gpu: GpuState, corrected: int, uncorrected: int, deliver: bool) -> None:
        gpu.ecc_corrected += corrected
        gpu.ecc_uncorrected += uncorrected
        for _ in range(uncorrected):
            if gpu.spec.model.row_remapping:
                gpu.remapped_uncorrectable += 1
                gpu.remap_pending = True
            else:
                gpu.retired_pages.append(RETIRED_PAGE_BASE + 0x1000 * len(gpu.retired_pages))
                gpu.retirement_pending = True
        if deliver and corrected:
            self._deliver(gpu.spec.index, pynvml.nvmlEventTypeSingleBitEccError, 0, NO_INSTANCE, NO_INSTANCE)
        if deliver and uncorrected:
            self._deliver(gpu.spec.index, pynvml.nvmlEventTypeDoubleBitEccError, 0, NO_INSTANCE, NO_INSTANCE)

    def _deliver(self, index: int, event_type: int, data: int, gi: int, ci: int) -> None:
        for es in self.event_sets.values():
            if es.registrations.get(index, 0) & event_type:
                es.queue.append((index, event_type, data, gi, ci))
