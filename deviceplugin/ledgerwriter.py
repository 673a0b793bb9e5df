"""The ledger worker: what the kubelet gave each pod, recorded on the Pod, reconciled with the kubelet.

Allocate only notes that something was given (and pokes this worker). The kubelet's pod-resources
API is the truth of who holds what: for every pod it lists with Tessera devices, the worker writes
``tessera.io/allocated`` (per container, per resource: IDs, GPUs, core percent, GiB) when it
differs from what the Pod says, and for a pod that came without a valid extender assignment it also
writes the assignment itself, marked ``writtenBy: device-plugin``, so the ledger is complete. After
a plugin restart the same pass rebuilds it: nothing is written twice, nothing is handed out twice.
"""

from __future__ import annotations

import queue
import threading

from deviceplugin.apiclient import NodeApi
from deviceplugin.podresources import Holding
from deviceplugin.podwatch import PodWatch
from deviceplugin.rm import NodeDevices, Request, RequestError
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT
from tessera.allocated import AllocatedRecord, encode_allocated
from tessera.assignment import WRITTEN_BY_PLUGIN, Assignment, ResourceAssignment, plugin_assignment
from tessera.backoff import Backoff
from tessera.log import get_logger

log = get_logger("deviceplugin")


class LedgerWriter:
    """Records allocations on Pods from a worker thread; never on the kubelet's path."""

    def __init__(self, api: NodeApi, rm: NodeDevices, node: str, pods: PodWatch, sync=None) -> None:
        self.api, self.rm, self.node, self.pods = api, rm, node, pods
        self.sync = sync  # PodResourcesSync to poke after an Allocate
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dp-ledger", daemon=True)
        self._written: dict[str, tuple[str, str | None]] = {}  # pod uid -> (allocated, assignment) written
        self._retry = Backoff()  # the API server refused a write: the next reconciles wait for it

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=5)

    # called by Admission.allocate: memory only
    def allocated(self, request: Request, pending) -> None:
        if pending is not None:
            self.pods.mark_allocated(pending.pod_uid, pending.container, request.resource)
        if self.sync is not None:
            threading.Timer(0.1, self.sync.poke).start()

    # called by PodResourcesSync with the kubelet's truth
    def on_holdings(self, holdings: list[Holding]) -> None:
        self._queue.put(list(holdings))

    def _run(self) -> None:
        while not self._stop.is_set():
            holdings = self._queue.get()
            if holdings is None:
                return
            while not self._queue.empty():  # only the latest truth matters
                newer = self._queue.get_nowait()
                if newer is None:
                    return
                holdings = newer
            try:
                self._reconcile(holdings)
            except Exception:  # noqa: BLE001 - next round retries
                log.exception("ledger_reconcile_failed")

    def _reconcile(self, holdings: list[Holding]) -> None:
        per_pod: dict[str, dict[str, dict[str, ResourceAssignment]]] = {}
        for uid, container, resource, ids in holdings:
            if "/" in uid or not resource.startswith("nvidia.com/"):
                continue  # pod not (yet) known to the watch
            try:
                request = self.rm.check(resource, list(ids))
            except RequestError:
                continue
            per_pod.setdefault(uid, {}).setdefault(container, {})[resource] = ResourceAssignment(
                gpus=request.visible, device_ids=tuple(sorted(ids)), core=request.core, mem_gib=request.mem_gib)
            self.pods.mark_allocated(uid, container, resource)
        for uid, containers in per_pod.items():
            self._record(uid, containers)

    def _record(self, uid: str, containers: dict[str, dict[str, ResourceAssignment]]) -> None:
        entry = self.pods.entry(uid)
        if entry is None:
            return
        # The kubelet allocates a container's resources one Allocate at a time, and pod-resources shows
        # each as it lands: record a pod only once every Tessera resource it asks for is held. A partial
        # record would tell the extender the pod is allocated while the kubelet is still admitting it, and
        # the per-shape rule that lets GetPreferredAllocation know the pod by its size depends on that.
        for pending in entry.containers:
            held = containers.get(pending.container, {})
            if any(resource not in held for resource in pending.requests):
                return
        allocated = encode_allocated(AllocatedRecord(self.node, containers))
        assignment = None
        if not entry.trusted_assignment:
            assignment = plugin_assignment(Assignment(self.node, uid, containers, written_by=WRITTEN_BY_PLUGIN))
        patch = {}
        if entry.annotations.get(ANNOTATION_ALLOCATED) != allocated:
            patch[ANNOTATION_ALLOCATED] = allocated
        if assignment is not None and entry.annotations.get(ANNOTATION_ASSIGNMENT) != assignment:
            patch[ANNOTATION_ASSIGNMENT] = assignment
        if not patch or self._written.get(uid) == (allocated, assignment) or not self._retry.due():
            return
        try:
            self.api.patch_pod_annotations(entry.namespace, entry.name, patch)
        except Exception as exc:  # noqa: BLE001 - a reconcile after the backoff retries
            self._retry.failed()
            log.warning("ledger_write_failed", pod=f"{entry.namespace}/{entry.name}", reason=str(exc))
            return
        self._retry.reset()
        self._written[uid] = (allocated, assignment)
        log.info("ledger_recorded", pod=f"{entry.namespace}/{entry.name}", pod_uid=uid,
                 keys=sorted(patch), plugin_written=ANNOTATION_ASSIGNMENT in patch)
