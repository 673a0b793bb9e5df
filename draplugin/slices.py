"""This node's ResourceSlice: written at start, and again whenever it is gone or differs.

The kubelet deletes every ResourceSlice of its node when it starts, and a driver's slices 30 s after
the driver's registration ends; an admin may delete one by hand. So the publisher does not write once:
it watches the slices of this node and this driver (field selectors ``spec.nodeName`` and
``spec.driver``) and writes the wanted one again whenever what the API server holds is not it. The
slice is owned by the Node (deleted with it) and its pool is named after the node. Each write of new
content bumps the pool's generation, as the scheduler takes the newest generation.

The pool is one slice, or more where the API server's limits ask for it: a slice holds either devices
or shared counters (a ``mig`` GPU's counter set), never both, so MIG GPUs add a ``<node>-<driver>-counters``
slice (8 counter sets a slice, more in ``-counters-1``, ...); and a slice whose devices consume counters
holds at most 64 devices, so more are split over ``<node>-<driver>-1``, ``-2``, ... Every slice of the pool carries the same generation and the count.

A GPU the node's inventory (``tessera.io/gpu-inventory``, the device plugin's) lists is left out of
the slice, whatever the config says: the device plugin serves it, and a GPU is never served both
ways (a device plugin of an older release, or one started with another config, would otherwise hand
out a GPU that kube-scheduler also allocates). The watch ends every minute, so a GPU the device
plugin gives up is published within one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import kubernetes

from tessera import ANNOTATION_INVENTORY
from tessera.backoff import Backoff
from tessera.inventory import InventoryError, NodeInventory
from tessera.kube import watch_events
from tessera.log import get_logger
from tessera.quantity import QuantityError, parse_quantity

log = get_logger("draplugin")

GROUP, VERSION, PLURAL = "resource.k8s.io", "v1", "resourceslices"
TIMEOUT_S = 10
WATCH_S = 60   # a watch's length: the slice is checked against the Node at least this often
MAX_DEVICES = 64   # per slice, where devices consume counters or carry taints (ResourceSliceMaxDevicesWithAdvancedFeatures)
MAX_COUNTER_SETS = 8   # per slice (ResourceSliceMaxCounterSets)


def device_plugin_gpus(node: dict) -> set[str]:
    """The GPU UUIDs the Node's inventory annotation lists (the device plugin serves them); an annotation
    that does not parse counts as listing none, and is logged."""
    text = ((node.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_INVENTORY)
    if not text:
        return set()
    try:
        return {g.uuid for g in NodeInventory.from_json(text).gpus}
    except InventoryError as err:
        log.warning("node_inventory_unreadable", node=node["metadata"]["name"], reason=str(err))
        return set()


def wanted_slice(node: dict, driver: str, devices: list[dict], generation: int) -> dict:
    """The ResourceSlice of ``devices`` on Node ``node`` (its name and uid from the Node object)."""
    name = node["metadata"]["name"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceSlice",
        "metadata": {"name": f"{name}-{driver}",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                          "uid": node["metadata"]["uid"], "controller": True}]},
        "spec": {"driver": driver, "nodeName": name,
                 "pool": {"name": name, "generation": generation, "resourceSliceCount": 1},
                 "devices": devices},
    }


def wanted_slices(node: dict, driver: str, devices: list[dict], counter_sets: list[dict],
                  generation: int) -> list[dict]:
    """The slices of this node's pool: the devices, at most :data:`MAX_DEVICES` a slice, then the counter
    sets (if any) in a slice of their own; each names the pool's slice count."""
    chunks = [devices[i:i + MAX_DEVICES] for i in range(0, len(devices), MAX_DEVICES)] or [[]]
    slices = []
    for k, chunk in enumerate(chunks):
        one = wanted_slice(node, driver, chunk, generation)
        if k:
            one["metadata"]["name"] += f"-{k}"
        slices.append(one)
    for k in range(0, len(counter_sets), MAX_COUNTER_SETS):
        one = wanted_slice(node, driver, [], generation)
        one["metadata"]["name"] += "-counters" + (f"-{k // MAX_COUNTER_SETS}" if k else "")
        del one["spec"]["devices"]
        one["spec"]["sharedCounters"] = counter_sets[k:k + MAX_COUNTER_SETS]
        slices.append(one)
    for one in slices:
        one["spec"]["pool"]["resourceSliceCount"] = len(slices)
    return slices


def _amounts(value):
    """``value`` with every quantity string read as its amount: the API server stores quantities in its
    canonical form ("81920Mi" comes back as "80Gi"), which must not read as a change."""
    if isinstance(value, dict):
        return {k: _amounts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_amounts(v) for v in value]
    if isinstance(value, str):
        try:
            return parse_quantity(value)
        except QuantityError:
            return value
    return value


def _taints(value) -> list:
    """Taints as compared: the API server stamps ``timeAdded`` on a taint written without one."""
    return [{k: v for k, v in t.items() if k != "timeAdded"} for t in value or [] if isinstance(t, dict)]


def _same(key: str, a, b) -> bool:
    if key == "taints":
        return _taints(a) == _taints(b)
    return _amounts(a) == _amounts(b) if key in ("capacity", "consumesCounters", "sharedCounters") else a == b


def differences(held: dict, wanted: dict) -> list[str]:
    """Where the slice the API server ``held`` differs from the ``wanted`` one (its generation aside):
    ``spec.driver``, ``spec.devices[gpu-5].capacity``, ... (empty: the same)."""
    h, w = held.get("spec") or {}, wanted["spec"]
    found = [f"spec.{key}" for key in ("driver", "nodeName") if h.get(key) != w[key]]
    for key in ("name", "resourceSliceCount"):
        if (h.get("pool") or {}).get(key) != w["pool"][key]:
            found.append(f"spec.pool.{key}")
    if not _same("sharedCounters", h.get("sharedCounters"), w.get("sharedCounters")):
        found.append("spec.sharedCounters")
    held_devices = {d.get("name"): d for d in h.get("devices") or []}
    wanted_devices = {d["name"]: d for d in w.get("devices") or []}
    for name in sorted(set(held_devices) | set(wanted_devices)):
        a, b = held_devices.get(name), wanted_devices.get(name)
        if a is None or b is None:
            found.append(f"spec.devices[{name}]")
            continue
        found.extend(f"spec.devices[{name}].{key}" for key in sorted(set(a) | set(b))
                     if not _same(key, a.get(key), b.get(key)))
    return found


def same_content(held: dict, wanted: dict) -> bool:
    """Whether the slice the API server ``held`` publishes the ``wanted`` devices on the same node."""
    return not differences(held, wanted)


class SlicePublisher:
    """Keeps the wanted ResourceSlice in the API server; :meth:`start` a thread, :meth:`stop` it."""

    def __init__(self, client: kubernetes.client.ApiClient, node: str, driver: str,
                 devices: Callable[[], list[dict]], counter_sets: Callable[[], list[dict]] = list) -> None:
        self.objects = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.node, self.driver, self.devices, self.counter_sets = node, driver, devices, counter_sets
        self.published = threading.Event()   # set once the API server holds the wanted slice
        self._stop = threading.Event()
        self._poked = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dra-slices", daemon=True)
        self._response = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            response.close()
        self._thread.join(timeout=5)

    def poke(self) -> None:
        """Write the slices again now: what they should hold changed (a GPU's health)."""
        self._poked.set()
        response = self._response
        if response is not None:
            response.close()

    def _selector(self) -> str:
        return f"spec.nodeName={self.node},spec.driver={self.driver}"

    def reconcile(self) -> str:
        """Make the API server hold exactly the wanted slice; the resourceVersion to watch from."""
        node = json.loads(self.core.read_node(self.node, _preload_content=False, _request_timeout=TIMEOUT_S).data)
        listed = json.loads(self.objects.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, field_selector=self._selector(), _preload_content=False,
            _request_timeout=TIMEOUT_S).data)
        held = listed.get("items", [])
        generation = max([(s["spec"].get("pool") or {}).get("generation", 0) for s in held] or [0])
        taken = device_plugin_gpus(node)
        devices, left_out = [], set()
        for device in self.devices():
            attrs = device["attributes"]
            uuid = (attrs.get("uuid") or attrs.get("parentUUID") or {}).get("string")
            if uuid in taken:
                log.warning("gpu_served_by_device_plugin", device=device["name"], uuid=uuid,
                            effect="left out of the ResourceSlice")
                left_out.update(c["counterSet"] for c in device.get("consumesCounters") or [])
            else:
                devices.append(device)
        counter_sets = [c for c in self.counter_sets() if c["name"] not in left_out]
        wanted = wanted_slices(node, self.driver, devices, counter_sets, generation)
        mine = {s["metadata"]["name"]: s for s in held}
        changed = [w for w in wanted if w["metadata"]["name"] not in mine
                   or not same_content(mine[w["metadata"]["name"]], w)]
        stale = [s for name, s in mine.items() if name not in {w["metadata"]["name"] for w in wanted}]
        # A write of the pool that stopped half way leaves slices of two generations: the older ones are
        # not read, so the pool is incomplete until all are written again.
        split = len({(s["spec"].get("pool") or {}).get("generation") for s in held}) > 1
        if changed or stale or split:
            for w in wanted:   # the whole pool moves to the new generation together
                w["spec"]["pool"]["generation"] = generation + 1
                name = w["metadata"]["name"]
                if name in mine:
                    w["metadata"]["resourceVersion"] = mine[name]["metadata"]["resourceVersion"]
                    self.objects.replace_cluster_custom_object(GROUP, VERSION, PLURAL, name, w,
                                                               _request_timeout=TIMEOUT_S)
                    log.info("resource_slice_updated", slice=name, devices=len(w["spec"].get("devices") or []),
                             generation=generation + 1, differed=differences(mine[name], w)[:8])
                else:
                    self.objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, w, _request_timeout=TIMEOUT_S)
                    log.info("resource_slice_published", slice=name, devices=len(w["spec"].get("devices") or []),
                             generation=generation + 1)
            for other in stale:
                self.objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, other["metadata"]["name"],
                                                          _request_timeout=TIMEOUT_S)
                log.info("resource_slice_deleted", slice=other["metadata"]["name"], reason="not in this driver's pool")
        self.published.set()
        return listed["metadata"]["resourceVersion"]

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                self._poked.clear()
                version = self.reconcile()
                backoff.reset()
                self._watch(version)
            except Exception as exc:  # noqa: BLE001 - the API server may be away; try again
                if self._stop.is_set():
                    return
                if self._poked.is_set():
                    continue   # the watch was closed by poke()
                log.warning("resource_slice_sync_failed", reason=str(exc)[:300],
                            retry_within_s=round(backoff.ceiling(), 2))
                if not backoff.wait(self._stop):
                    return

    def _watch(self, version: str) -> None:
        """Return at the first change to this node's slices (so :meth:`reconcile` runs), or when the
        watch ends."""
        response = self.objects.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, field_selector=self._selector(), watch=True, resource_version=version,
            allow_watch_bookmarks=True, timeout_seconds=WATCH_S, _preload_content=False)
        self._response = response
        if self._poked.is_set():   # poked between the reconcile and this watch
            response.close()
            self._response = None
            return
        try:
            for event in watch_events(response):
                if self._stop.is_set():
                    return
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    return
        finally:
            self._response = None
            response.close()
