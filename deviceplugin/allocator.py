"""The plugin's half of the kubelet admitting a pod: which IDs to prefer, and the Allocate answer.

GetPreferredAllocation carries no pod identity: the pod is known from the size asked (the extender
never leaves two bound-not-allocated pods of one shape on a node), and its signed assignment's IDs
are answered. Without one, the resource manager's best fit. Allocate answers from the IDs alone,
from memory: no API call on the kubelet's path; the ledger worker records the rest later.
"""

from __future__ import annotations

import time
from typing import Protocol

from deviceplugin import metrics
from deviceplugin.response import ResponseSettings, container_response
from deviceplugin.rm import NodeDevices, Request, RequestError
from tessera import RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera.assignment import ResourceAssignment
from tessera.kubeletapi import deviceplugin_pb2 as api
from tessera.log import get_logger

log = get_logger("deviceplugin")
_OTHER = {RESOURCE_MPS_CORE: RESOURCE_MPS_MEMORY, RESOURCE_MPS_MEMORY: RESOURCE_MPS_CORE}


class PendingContainer(Protocol):
    pod_uid: str
    container: str
    requests: dict[str, int]
    assigned: dict[str, ResourceAssignment]  # from a verified extender assignment; empty without one


class PendingPods(Protocol):
    def match(self, resource: str, size: int, wait_s: float = 0.0) -> PendingContainer | None: ...


class Recorder(Protocol):
    def allocated(self, request: Request, pending: PendingContainer | None) -> None: ...


class Allocator:
    """Decisions for GetPreferredAllocation and Allocate, over the resource manager."""

    def __init__(self, rm: NodeDevices, settings: ResponseSettings, pods: PendingPods | None = None,
                 recorder: Recorder | None = None, match_wait_s: float = 0.3) -> None:
        self.rm = rm
        self.settings = settings
        self.pods = pods
        self.recorder = recorder
        self.match_wait_s = match_wait_s
        self._mig_index: dict[str, int] = {}
        for gpu in rm.gpu_infos():
            for k, mig in enumerate(gpu.mig_instances):
                self._mig_index[mig.uuid] = k

    def preferred(self, resource: str, available: list[str], must: list[str], size: int) -> list[str]:
        start = time.perf_counter()
        pending = self.pods.match(resource, size, self.match_wait_s) if self.pods else None
        assigned = pending.assigned.get(resource) if pending else None
        source = "plugin"
        if assigned and len(assigned.device_ids) == size:
            offered = set(available) | set(must)
            if set(assigned.device_ids) <= offered and set(must) <= set(assigned.device_ids):
                ids, source = list(assigned.device_ids), "assignment"
            else:
                log.warning("assignment_not_available", resource=resource, pod_uid=pending.pod_uid,
                            reason="assigned IDs are not among those the kubelet offers; using best fit")
        if source == "plugin":
            other_need = pending.requests.get(_OTHER.get(resource, ""), 0) if pending else 0
            ids = self.rm.preferred(resource, available, must, size, other_need=other_need)
        metrics.PREFERRED_SECONDS.labels(resource, source).observe(time.perf_counter() - start)
        log.info("preferred_allocation", resource=resource, size=size, source=source,
                 pod_uid=pending.pod_uid if pending else None, ids=len(ids))
        return ids

    def allocate(self, resource: str, ids: list[str]) -> api.ContainerAllocateResponse:
        start = time.perf_counter()
        try:
            request = self.rm.check(resource, ids)
            response = container_response(request, self.settings, self._mig_index)  # refuses nodes it cannot name
            pending = self.pods.match(resource, len(ids)) if self.pods else None
            paired = pending is not None and _OTHER.get(resource) in pending.requests
            self.rm.pair_check(request, (pending.pod_uid, pending.container) if paired else None)
        except RequestError as err:
            metrics.ALLOCATIONS.labels(resource, "refused").inc()
            log.warning("allocation_refused", resource=resource, ids=len(ids), reason=str(err))
            raise
        self.rm.note_allocated(resource, ids)
        if self.recorder is not None:
            self.recorder.allocated(request, pending)
        elapsed = time.perf_counter() - start
        metrics.ALLOCATE_SECONDS.labels(resource).observe(elapsed)
        metrics.ALLOCATIONS.labels(resource, "granted").inc()
        log.info("allocated", resource=resource, gpus=list(request.visible), ids=len(ids), core=request.core,
                 mem_gib=request.mem_gib, ms=round(elapsed * 1000, 2))
        return response
