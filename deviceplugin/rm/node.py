"""The node's resource manager: GPUs, modes, health and who holds what, as one consistent state.

It answers every decision the gRPC servers need (which devices a resource has and their health,
which IDs to prefer, what a set of IDs means) and is tested without gRPC. Every change bumps
``version`` and wakes :meth:`wait_change`, which ListAndWatch streams and the inventory writer use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from deviceplugin.rm.devices import CORES_PER_GPU, Device, node_devices
from tessera.gpuhealth import HealthTracker
from tessera.deviceids import gpu_of, parse_share
from deviceplugin.rm.modes import ModeBook, desired_modes
from deviceplugin.rm.preferred import best_gpu_set, tightest
from deviceplugin.rm.requests import Request, RequestError, check_request
from tessera import RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera.gpu import GpuEvent, GpuInfo
from tessera.inventory import GpuHealth, GpuInventory, MigSlot, NodeInventory
from tessera.log import get_logger

log = get_logger("deviceplugin")

PAIR_WINDOW_S = 5.0
_OTHER = {RESOURCE_MPS_CORE: RESOURCE_MPS_MEMORY, RESOURCE_MPS_MEMORY: RESOURCE_MPS_CORE}


class NodeDevices:
    """Everything the plugin knows about this node's GPUs. Thread-safe."""

    def __init__(self, gpus: list[GpuInfo], *, default_mode: str, gpu_modes: dict[int, str], replicas: int,
                 health: HealthTracker, label_mode: str | None = None) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._gpus: dict[int, GpuInfo] = {g.index: g for g in gpus if g.uuid and g.memory_total_mib}
        self._by_uuid = {g.uuid: g for g in self._gpus.values()}
        self._default_mode, self._gpu_modes, self._replicas = default_mode, dict(gpu_modes), replicas
        self._replicas_wanted = replicas   # a reduction waits while a time-sliced GPU holds grants
        self._mps_supervised = False   # an MPS supervisor answers for the daemon (supervise_mps)
        self._health = health
        self._label_mode = label_mode
        self._modes = ModeBook()
        self._in_use: dict[str, set[str]] = {}
        self._holdings: list[tuple[str, str, str, tuple[str, ...]]] = []  # (pod uid, container, resource, ids)
        self._pair: dict[str, tuple] = {}  # resource -> (GPU UUIDs, when, (pod uid, container) or None) of a half
        self._devices: dict[str, dict[str, Device]] = {}
        self._mps_down: str | None = None  # why the MPS control daemon cannot serve (shares unhealthy)
        self._modes.update(self._desired(), set())
        self._rebuild()

    # ---- what callers read (copies: the state changes only through the methods below) ------------
    @property
    def version(self) -> int:
        """Bumped by every change (:meth:`wait_change` waits for it to move)."""
        return self._version

    @property
    def mps_down(self) -> str | None:
        """Why the MPS control daemon cannot serve (its shares are unhealthy), or None."""
        return self._mps_down

    def gpu_infos(self) -> list[GpuInfo]:
        """The node's GPUs (those NVML read with a UUID and memory), by index."""
        with self._lock:
            return [self._gpus[i] for i in sorted(self._gpus)]

    def gpu_health(self) -> dict[int, bool]:
        """Per GPU index: whether it is healthy now."""
        with self._lock:
            return {i: self._health.healthy(i) for i in self._gpus}

    def active_modes(self) -> dict[int, str]:
        """Per GPU index: the mode it is in."""
        with self._lock:
            return dict(self._modes.active)

    def pending_modes(self) -> dict[int, str]:
        """Per GPU index: the mode it takes once drained (only GPUs waiting for one)."""
        with self._lock:
            return dict(self._modes.pending)

    # ---- state changes ------------------------------------------------------------------------
    def _desired(self) -> dict[int, str]:
        return desired_modes(list(self._gpus.values()), self._default_mode, self._gpu_modes, self._label_mode)

    def desired_with(self, default_mode: str, gpu_modes: dict[int, str]) -> dict[int, str]:
        """The modes these settings would ask of each GPU (the node label and MIG as now)."""
        with self._lock:
            return desired_modes(list(self._gpus.values()), default_mode, gpu_modes, self._label_mode)

    def _rebuild(self) -> None:
        self._devices = node_devices(list(self._gpus.values()), self._modes.active, self._replicas)

    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def wait_change(self, seen: int, timeout_s: float) -> int:
        """Block until ``version`` moves past ``seen`` (or the timeout); returns the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen, timeout=timeout_s)
            return self._version

    def apply_events(self, events: Iterable[GpuEvent]) -> bool:
        with self._lock:
            changed = any([self._health.on_event(e) for e in events])
            if changed:
                self._bump()
            return changed

    def apply_reads(self, infos: list[GpuInfo]) -> bool:
        """A fresh NVML read: GPUs that fail go out, GPUs that read well after a reset come back."""
        with self._lock:
            changed = False
            for info in infos:
                if info.index in self._gpus:
                    changed |= self._health.on_read(info.index, info.error)
            if changed:
                self._bump()
            return changed

    def carry_over_health(self, outages: dict[str, tuple[str, str]]) -> list[int]:
        """Fatal outages recorded before a restart, GPU UUID -> (reason, since); the GPUs put out."""
        with self._lock:
            out = [self._by_uuid[u].index for u, (reason, since) in outages.items()
                   if u in self._by_uuid and self._health.carry_over(self._by_uuid[u].index, reason, since)]
            if out:
                self._bump()
            return out

    def clear_health(self, uuids: Iterable[str]) -> list[int]:
        """The admin's clear for these GPU UUIDs; the GPUs brought back."""
        with self._lock:
            back = [self._by_uuid[u].index for u in uuids
                    if u in self._by_uuid and self._health.clear(self._by_uuid[u].index)]
            if back:
                self._bump()
            return back

    def tick(self) -> bool:
        with self._lock:
            changed = self._health.tick()
            if changed:
                self._bump()
            return changed

    @property
    def timeslice_replicas(self) -> int:
        """Replicas advertised per time-sliced GPU."""
        return self._replicas

    def set_mode_settings(self, default_mode: str, gpu_modes: dict[int, str], replicas: int) -> bool:
        """The node config's modes and time-slicing replicas, changed while running (a config reload): a
        GPU whose mode changes waits for its drain, as for the label, and fewer replicas wait until no
        time-sliced GPU holds grants (a held replica must not vanish). True if anything advertised changed."""
        with self._lock:
            self._default_mode, self._gpu_modes = default_mode, dict(gpu_modes)
            self._replicas_wanted = replicas
            return self._update_modes()

    def supervise_mps(self) -> None:
        """An MPS supervisor runs: a GPU that comes into mps mode later serves once it has the daemon
        answering (:meth:`set_mps_down` None), not before."""
        with self._lock:
            self._mps_supervised = True

    def busy_gpus(self) -> set[int]:
        """Indices of the GPUs that hold live grants."""
        with self._lock:
            return self._busy_gpus()

    def _update_replicas(self, busy: set[int]) -> bool:
        wanted = self._replicas_wanted
        if wanted == self._replicas:
            return False
        if wanted < self._replicas and any(self._modes.active.get(i) == "timeslice" for i in busy):
            return False   # said once by the reload (node_config_applied shows the replicas asked)
        log.info("timeslice_replicas_changed", old=self._replicas, new=wanted)
        self._replicas = wanted
        return True

    def set_label_mode(self, label: str | None) -> bool:
        with self._lock:
            if label == self._label_mode:
                return False
            self._label_mode = label
            return self._update_modes()

    def _busy_gpus(self) -> set[int]:
        busy_uuids = {gpu_of(i) for ids in self._in_use.values() for i in ids}
        mig_owner = {m.uuid: g.uuid for g in self._gpus.values() for m in g.mig_instances}
        busy_uuids = {mig_owner.get(u, u) for u in busy_uuids}
        return {self._by_uuid[u].index for u in busy_uuids if u in self._by_uuid}

    def _update_modes(self) -> bool:
        had_mps = "mps" in self._modes.active.values()
        busy = self._busy_gpus()
        changed = self._modes.update(self._desired(), busy)
        changed = self._update_replicas(busy) or changed
        if changed:
            if self._mps_supervised and not had_mps and "mps" in self._modes.active.values() and self._mps_down is None:
                # a GPU now in mps mode serves nothing until the supervisor has the daemon answering
                self._mps_down = "MPS control daemon not yet confirmed for the GPUs now in mps mode"
            self._rebuild()
            self._bump()
        return changed

    def set_holdings(self, holdings: list[tuple[str, str, str, tuple[str, ...]]]) -> bool:
        """The kubelet's truth (pod-resources API): (pod UID, container, resource, IDs) per holding."""
        with self._lock:
            holdings = [h for h in holdings if h[2].startswith("nvidia.com/")]
            mine: dict[str, set[str]] = {}
            for _, _, resource, ids in holdings:
                mine.setdefault(resource, set()).update(ids)
            self._holdings = holdings
            if mine == self._in_use:
                return False
            self._in_use = mine
            self._update_modes()  # a drained GPU may now take its pending mode
            self._bump()
            return True

    def note_allocated(self, resource: str, ids: Iterable[str]) -> None:
        """Allocate gave these IDs (before the pod-resources API shows them)."""
        with self._lock:
            self._in_use.setdefault(resource, set()).update(ids)

    # ---- what the kubelet sees ----------------------------------------------------------------
    def resources(self) -> list[str]:
        with self._lock:
            return sorted(self._devices)

    def set_mps_down(self, reason: str | None) -> bool:
        """The MPS control daemon went down (``reason``) or came back (None)."""
        with self._lock:
            if reason == self._mps_down:
                return False
            self._mps_down = reason
            self._bump()
            return True

    def listing(self, resource: str) -> list[tuple[Device, bool]]:
        """Each device of ``resource`` with its health."""
        with self._lock:
            if self._mps_down is not None and resource in _OTHER:
                return [(d, False) for d in self._devices.get(resource, {}).values()]
            return [(d, self._health.healthy(d.gpu_index)) for d in self._devices.get(resource, {}).values()]

    def check(self, resource: str, ids: list[str]) -> Request:
        """What ``ids`` mean; RequestError if they cannot be given together."""
        with self._lock:
            known = self._devices.get(resource, {})
            memory = {g.uuid: g.memory_total_mib // 1024 for g in self._gpus.values()}
        return check_request(resource, ids, known, memory)

    def pair_check(self, request: Request, container: tuple[str, str] | None = None) -> None:
        """mps-core and mps-memory of one container come as two Allocate calls: same GPUs, or an error.

        The check applies when both halves are known to be one container's (``container`` from the
        pod watch); otherwise the first half only steers the second's preferred allocation.
        """
        other = _OTHER.get(request.resource)
        if other is None:
            return
        now = time.monotonic()
        with self._lock:
            half = self._pair.pop(other, None)
            fresh = half is not None and now - half[1] <= PAIR_WINDOW_S
            same = container is not None and half is not None and half[2] == container
            if fresh and same and set(half[0]) != set(request.gpu_uuids):
                raise RequestError(f"{request.resource} IDs are on GPU {self._names(request.gpu_uuids)} but this "
                                   f"container's {other} is on GPU {self._names(half[0])}; core and memory of an "
                                   "MPS share come from the same card")
            if not fresh:
                # the first half of a container: the other half prefers (and, when known, must use) its GPU
                self._pair[request.resource] = (request.gpu_uuids, now, container)

    def _names(self, uuids: Iterable[str]) -> str:
        return ",".join(str(self._by_uuid[u].index) if u in self._by_uuid else u for u in uuids)

    # ---- preferred allocation -----------------------------------------------------------------
    def preferred(self, resource: str, available: list[str], must: list[str], size: int,
                  other_need: int = 0) -> list[str]:
        """The IDs to prefer: ``must`` first, then the plugin's best fit from ``available``.

        ``other_need`` is the size of the same container's other MPS half (memory GiB for a core
        call, cores for a memory call) when known, so the chosen GPU fits both.
        """
        with self._lock:
            devices = self._devices.get(resource, {})
            avail = [i for i in dict.fromkeys(must + available) if i in devices]
            if resource == RESOURCE_GPU:
                return self._prefer_gpus(avail, must, size)
            if resource in (RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY):
                return self._prefer_mps(resource, avail, must, size, other_need)
            if resource == RESOURCE_GPU_SHARED:
                return self._prefer_spread(avail, must, size)
            return (must + [i for i in avail if i not in must])[:size]

    def _prefer_gpus(self, avail: list[str], must: list[str], size: int) -> list[str]:
        healthy = [self._by_uuid[i] for i in avail if i in self._by_uuid]
        chosen = best_gpu_set(healthy, size, [self._by_uuid[i] for i in must if i in self._by_uuid])
        return [g.uuid for g in chosen]

    def _by_gpu(self, ids: list[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for device_id in ids:
            groups.setdefault(gpu_of(device_id), []).append(device_id)
        for group in groups.values():
            group.sort(key=lambda i: (parse_share(i) or ("", "", 0))[2])
        return groups

    def _free_of(self, resource: str) -> dict[str, int]:
        """Free IDs per GPU of ``resource`` as this plugin counts them (healthy GPUs only)."""
        used = self._in_use.get(resource, set())
        free: dict[str, int] = {}
        for device in self._devices.get(resource, {}).values():
            if device.id not in used and self._health.healthy(device.gpu_index):
                free[device.gpu_uuid] = free.get(device.gpu_uuid, 0) + 1
        return free

    def _prefer_mps(self, resource: str, avail: list[str], must: list[str], size: int, other_need: int) -> list[str]:
        groups = self._by_gpu(avail)
        other = _OTHER[resource]
        half = self._pair.get(other)
        card = {u: (CORES_PER_GPU if resource == RESOURCE_MPS_CORE else self._by_uuid[u].memory_total_mib // 1024)
                for u in groups if u in self._by_uuid}
        if must:
            order = list(dict.fromkeys(gpu_of(i) for i in must))
        elif half is not None and time.monotonic() - half[1] <= PAIR_WINDOW_S and all(u in groups for u in half[0]):
            order = list(half[0])  # the other half of this container went there
        else:
            free = {u: len(ids) for u, ids in groups.items()}
            largest = max(card.values(), default=0)
            if size > largest and largest:
                whole = [self._by_uuid[u] for u, n in free.items() if n == card.get(u)]
                whole = [g for g in whole if self._free_of(other).get(g.uuid, 0) >= (
                    CORES_PER_GPU if other == RESOURCE_MPS_CORE else g.memory_total_mib // 1024)]
                count = -(-size // largest)
                order = [g.uuid for g in best_gpu_set(whole, count)]
            else:
                pick = tightest(free, size, self._free_of(other), other_need)
                order = [pick] if pick else sorted(free, key=lambda u: -free[u])
        chosen = list(must)
        for uuid in order:
            chosen += [i for i in groups.get(uuid, []) if i not in chosen][: size - len(chosen)]
        return chosen[:size]

    def _prefer_spread(self, avail: list[str], must: list[str], size: int) -> list[str]:
        groups = self._by_gpu([i for i in avail if i not in must])
        chosen = list(must)
        while len(chosen) < size and any(groups.values()):
            for uuid in sorted(groups, key=lambda u: -len(groups[u])):
                if groups[uuid] and len(chosen) < size:
                    chosen.append(groups[uuid].pop(0))
        return chosen

    # ---- inventory ----------------------------------------------------------------------------
    def inventory(self, node: str) -> NodeInventory:
        """The node inventory document (``tessera.io/gpu-inventory``)."""
        with self._lock:
            index_of = {g.uuid: g.index for g in self._gpus.values()}
            gpus = []
            for g in sorted(self._gpus.values(), key=lambda x: x.index):
                cond = self._health.out.get(g.index)
                health = GpuHealth(False, cond.reason, cond.since) if cond else GpuHealth()
                mig = tuple(MigSlot(m.profile, m.uuid, m.gpu_instance_id, m.compute_instance_id, m.memory_mib,
                                    m.sm_count, m.placement_start, m.placement_size, healthy=cond is None)
                            for m in g.mig_instances)
                gpus.append(GpuInventory(
                    index=g.index, uuid=g.uuid, model=g.name, memory_mib=g.memory_total_mib, sm_count=g.sm_count or 0,
                    mode=self._modes.active.get(g.index, "exclusive"), health=health, numa_node=g.numa_node,
                    nvlink_peers=tuple(sorted(index_of[p.uuid] for p in g.nvlink_peers if p.uuid in index_of)),
                    mig=mig, pending_mode=self._modes.pending.get(g.index)))
            return NodeInventory(node=node, gpus=tuple(gpus))

    def largest_mps_grants(self) -> dict[int, tuple[int, int]]:
        """Per MPS GPU index: (largest live core grant in %, largest live memory grant in GiB); 0 when none."""
        with self._lock:
            result = {i: (0, 0) for i, m in self._modes.active.items() if m == "mps"}
            for _, _, resource, ids in self._holdings:
                if resource not in (RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY):
                    continue
                per: dict[str, int] = {}
                for device_id in ids:
                    per[gpu_of(device_id)] = per.get(gpu_of(device_id), 0) + 1
                for uuid, count in per.items():
                    gpu = self._by_uuid.get(uuid)
                    if gpu is None or gpu.index not in result:
                        continue
                    core, mem = result[gpu.index]
                    result[gpu.index] = ((max(core, min(count, 100)), mem) if resource == RESOURCE_MPS_CORE
                                         else (core, max(mem, count)))
            return result
