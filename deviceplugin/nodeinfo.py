"""The Node's inventory annotation and GFD's labels, written on change only; the mode label read back.

``tessera.io/gpu-inventory`` and GPU Feature Discovery's ``nvidia.com/*`` labels
(:mod:`deviceplugin.gfdlabels`; none with ``gfd_labels: leave``) are written whenever inventory,
health or mode changes, never on a timer, and only the labels that changed. Tessera changes and
removes only labels it wrote (:mod:`deviceplugin.nodelabels`). ``tessera.io/gpu-mode`` is the
admin's override: it is written only where the Node has none (the node's mode as configured), and a
change of it is applied to the GPUs (waiting for drains).
The admin's ``tessera.io/clear-gpu-health`` is applied and removed as it appears
(:mod:`deviceplugin.healthrecord`); the first write waits for the first read of the Node, so fatal Xids
the last inventory recorded are carried over before it is overwritten.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from deviceplugin.apiclient import NodeApi
from deviceplugin.gfdlabels import NodeFacts, gfd_labels
from deviceplugin.healthrecord import ANNOTATION_CLEAR_HEALTH, apply_clear, carry_over, clear_request
from deviceplugin.nodelabels import ANNOTATION_OWNED_LABELS, label_plan, node_labels, owned_labels
from deviceplugin.rm import NodeDevices
from tessera import ANNOTATION_INVENTORY, LABEL_GPU_MODE, RESOURCE_PREFIX
from tessera.backoff import Backoff
from tessera.follow import follow
from tessera.log import get_logger

log = get_logger("deviceplugin")


class NodeInfoWriter:
    """Writes the inventory and labels on change; watches the Node for its mode label."""

    def __init__(self, api: NodeApi, rm: NodeDevices, node: str, fatal_xids: list[int] = (),
                 carried_over: bool = False, *, gfd: str = "write", versions: tuple[str, str] = ("", ""),
                 on_node: Callable[[dict], None] | None = None) -> None:
        self.api, self.rm, self.node = api, rm, node
        self.gfd = gfd  # "write" or "leave" (deviceplugin.gfd_labels)
        self.on_node = on_node  # also told of every Node seen (the node config's label)
        self.versions = versions  # the driver's version and the CUDA version it runs
        self.fatal_xids = list(fatal_xids)
        self._carried_over = threading.Event()  # fatal Xids of the last inventory are in rm
        if carried_over:
            self._carried_over.set()
        self._stop = threading.Event()
        self.written = threading.Event()  # set at this writer's first write of the Node
        self._written: tuple[str, dict] | None = None
        self._left_alone: tuple[list[str], list[str]] = ([], [])
        self._resp = None
        self._threads = [threading.Thread(target=self._write_loop, name="dp-nodeinfo", daemon=True),
                         threading.Thread(target=self._watch_loop, name="dp-nodewatch", daemon=True)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        # Closing a watch response from another thread blocks on its reader; the watch threads are
        # daemon threads, so a read in progress ends with the process.
        for t in self._threads:
            t.join(timeout=0.2)  # daemon threads: a watch blocked in a read ends with the process

    def _write_loop(self) -> None:
        version = -1
        retry = Backoff()
        while not self._carried_over.wait(0.2):  # never overwrite a recorded fatal Xid before reading it
            if self._stop.is_set():
                return
        while not self._stop.is_set():
            current = self.rm.version
            if current != version or self._written is None:
                if self._write():
                    version = current
                    retry.reset()
                else:
                    retry.wait(self._stop)  # API away: retry, backing off
                    continue
            self.rm.wait_change(version, 1.0)

    def desired_labels(self) -> dict[str, str]:
        """The ``nvidia.com/*`` labels Tessera would write now ({} with ``gfd_labels: leave``)."""
        if self.gfd != "write":
            return {}
        return gfd_labels(NodeFacts(tuple(self.rm.gpu_infos()), self.rm.active_modes(), self.rm.timeslice_replicas,
                                    *self.versions))

    def _write(self) -> bool:
        text = self.rm.inventory(self.node).to_json()
        desired = self.desired_labels()
        if self._written == (text, desired):
            return True
        try:
            node = self.api.get_node()
            self.api.patch_node_metadata(*self._patch(node, text, desired))
        except Exception as exc:  # noqa: BLE001
            log.warning("node_inventory_write_failed", reason=str(exc))
            return False
        self._written = (text, desired)
        self.written.set()
        pending = {g.index: g.pending_mode for g in self.rm.inventory(self.node).gpus if g.pending_mode}
        log.info("node_inventory_written", node=self.node, bytes=len(text), pending_modes=pending or None)
        return True

    def _patch(self, node: dict | None, text: str, desired: dict[str, str]) -> tuple[dict, dict]:
        """The labels and annotations to merge into the Node: only what changed, only Tessera's own labels."""
        current, owned = node_labels(node), owned_labels(node, desired)
        if self.gfd != "write":  # leave: GFD's labels are another writer's, even those Tessera wrote before
            owned = {k: v for k, v in owned.items() if not k.startswith(RESOURCE_PREFIX)}
        desired = dict(desired)
        if LABEL_GPU_MODE not in current:  # the node's mode as configured, where the admin set none
            modes = Counter(self.rm.active_modes().values()).most_common(1)
            if modes:
                desired[LABEL_GPU_MODE] = modes[0][0]
        elif owned.get(LABEL_GPU_MODE) == current[LABEL_GPU_MODE]:
            desired[LABEL_GPU_MODE] = current[LABEL_GPU_MODE]  # ours, read back as the override: kept as is
        plan = label_plan(current, owned, desired)
        if (plan.foreign, plan.released) != self._left_alone:
            self._left_alone = (plan.foreign, plan.released)
            if plan.foreign or plan.released:
                log.info("node_labels_left_to_another_writer", node=self.node, foreign=plan.foreign or None,
                         changed_by_another=plan.released or None)
        annotations: dict[str, str | None] = {ANNOTATION_INVENTORY: text}
        if plan.annotation != (((node or {}).get("metadata") or {}).get("annotations") or {}).get(
                ANNOTATION_OWNED_LABELS):
            annotations[ANNOTATION_OWNED_LABELS] = plan.annotation
        return plan.labels, annotations

    def _watch_loop(self) -> None:
        """Follow this Node (read, then watch; read again after any failure): its mode label and requests."""
        follow("node", self._read_node, lambda version: self.api.watch("node", version, self._set_resp),
               on_list=lambda nodes: self._on_node(nodes[0] if nodes else {}), on_event=self._on_node_event,
               stop=self._stop, log=log, relist_after_error=True)

    def _read_node(self) -> tuple[list[dict], str]:
        """The Node as a list of one (none when it does not exist yet) and the version to watch from."""
        node = self.api.get_node()
        return ([node] if node else []), ((node or {}).get("metadata") or {}).get("resourceVersion") or "0"

    def _on_node_event(self, kind: str, node: dict) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._on_node(node)

    def _set_resp(self, resp) -> None:
        self._resp = resp

    def _on_node(self, node: dict) -> None:
        if self.on_node is not None:
            self.on_node(node)
        if not self._carried_over.is_set():
            carry_over(self.rm, node, self.fatal_xids)
            self._carried_over.set()
        requested = clear_request(node)
        if requested is not None:
            apply_clear(self.rm, requested)
            try:  # one-shot: a later fatal Xid on the same GPU must not be cleared by it
                self.api.patch_node_metadata({}, {ANNOTATION_CLEAR_HEALTH: None})
            except Exception as exc:  # noqa: BLE001 - the next Node event or start tries again
                log.warning("gpu_health_clear_not_removed", reason=str(exc))
        label = node_labels(node).get(LABEL_GPU_MODE)
        if self.rm.set_label_mode(label):
            log.info("gpu_mode_label_applied", label=label, modes=self.rm.active_modes(),
                     pending=self.rm.pending_modes())
