"""NodePrepareResources and NodeUnprepareResources: the kubelet's two calls, answered per claim.

Prepare reads the ResourceClaim from the API server (the request names only namespace, name and UID),
takes the results of its allocation that name this driver, and for each request signs its grants and
writes the claim's CDI spec: per device its node, and the request's variables and grants. The kubelet
passes the returned CDI IDs to containerd, the hook verifies the grants at container start.

- Exclusive GPUs: one grant of ``nvidia.com/gpu`` over the request's GPUs, their device nodes and the
  control nodes, as the device plugin's.
- An MPS GPU: the share kube-scheduler consumed from it (the result's ``consumedCapacity``: ``cores``
  and ``memory``) as the device plugin's pair of grants, ``nvidia.com/mps-core`` (with the pipe folder)
  and ``nvidia.com/mps-memory``, their ``CUDA_MPS_*`` variables, and the MPS daemon's pipe and shm
  folders mounted (shm as ``/dev/shm``). One MPS GPU per request.

- A timeslice GPU: one grant of ``nvidia.com/gpu.shared`` over it, as the device plugin's time-sliced
  replicas (the GPU whole, its turns shared with the other claims on it).
- A MIG device (a device of a ``mig`` GPU: a profile at a placement): the MIG instance is made there
  (GPU instance and its compute instance, :mod:`tessera.nvmlmig`), granted as the device plugin grants a
  MIG device (``nvidia.com/mig-<profile>`` over its UUID, its GPU's node and its two capability nodes),
  and removed at unprepare. A prepare that fails after making instances removes them again.

Both calls are idempotent, as the kubelet retries them: a claim prepared before (the checkpoint says
so and its CDI spec is there) gets the same answer; unpreparing a claim this driver does not know is a
success. A claim's failure is its own error string; the other claims of the call go on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import kubernetes

from draplugin import cdi
from draplugin.checkpoint import Checkpoint, PreparedClaim, PreparedDevice
from draplugin.devices import MODE_MPS, MODE_TIMESLICE, Published, PublishedMig
from tessera import RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY, mig_resource_name
from tessera.gpu import MigInstance
from tessera.grant import Grant, container_env, env_entry, new_grant
from tessera.hostdevices import CONTROL_NODES, host_device_path
from tessera.kubeletapi import dra_grpc, dra_pb2
from tessera.log import get_logger
from tessera.migcaps import capability_device
from tessera.nvmlmig import MigAdmin, MigError
from tessera.quantity import QuantityError, parse_quantity

log = get_logger("draplugin")
TIMEOUT_S = 10


class PrepareError(Exception):
    """One claim cannot be prepared; the message, for ``kubectl describe pod``, says why."""


@dataclass(frozen=True)
class PrepareSettings:
    """What preparing needs besides the claim."""

    driver: str
    node: str
    cdi_dir: str
    device_root: str          # where the device nodes are on the host ("/" on a real node)
    grant_key: bytes
    mps_pipe_directory: str = "/run/tessera/mps/pipe"
    mps_shm_directory: str = "/run/tessera/mps/shm"


CONTAINER_SHM = "/dev/shm"


def mps_share(result: dict, where: str) -> tuple[int, int]:
    """(cores, GiB) an MPS result consumed; PrepareError when the allocation does not say, or says
    something an MPS share cannot be."""
    consumed = result.get("consumedCapacity") or {}
    try:
        cores, memory = parse_quantity(consumed["cores"]), parse_quantity(consumed["memory"]) / 2**30
    except (KeyError, QuantityError) as err:
        raise PrepareError(f"{where}: the allocation of MPS device {result.get('device')} records no usable "
                           f"consumedCapacity ({err}); kube-scheduler needs DRAConsumableCapacity (beta, on by "
                           "default since 1.34)") from None
    if cores.denominator != 1 or not 1 <= cores <= 100 or memory.denominator != 1 or memory < 1:
        raise PrepareError(f"{where}: MPS device {result.get('device')} consumed {consumed}: an MPS share is "
                           "1..100 cores and whole GiB of memory")
    return int(cores), int(memory)


class ClaimReader:
    """ResourceClaims from the API server, as plain dicts."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.objects = kubernetes.client.CustomObjectsApi(client)

    def __call__(self, namespace: str, name: str) -> dict:
        try:
            return json.loads(self.objects.get_namespaced_custom_object(
                "resource.k8s.io", "v1", namespace, "resourceclaims", name, _preload_content=False,
                _request_timeout=TIMEOUT_S).data)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                raise PrepareError(f"ResourceClaim {namespace}/{name} does not exist (deleted meanwhile?)") from None
            raise


def my_results(claim: dict, driver: str, node: str) -> list[dict]:
    """The allocation results of ``claim`` for this driver; PrepareError when it is not allocated, or
    allocated from another node's pool."""
    allocation = (claim.get("status") or {}).get("allocation")
    if not allocation:
        raise PrepareError(f"ResourceClaim {_ref(claim)} is not allocated")
    results = [r for r in (allocation.get("devices") or {}).get("results") or [] if r.get("driver") == driver]
    for result in results:
        if result.get("pool") != node:
            raise PrepareError(f"ResourceClaim {_ref(claim)}: device {result.get('device')} is from pool "
                               f"{result.get('pool')!r}, not this node's ({node!r})")
    return results


def _ref(claim: dict) -> str:
    meta = claim.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


@dataclass
class _ClaimLock:
    lock: threading.Lock
    users: int = 0   # calls holding or waiting for it


class DraService(dra_grpc.DRAPluginServicer):
    """The kubelet's DRA calls for this node's published GPUs."""

    def __init__(self, settings: PrepareSettings, devices: Callable[[], dict[str, Published]],
                 read_claim: Callable[[str, str], dict], checkpoint: Checkpoint,
                 observe: Callable[[str, str, float], None] = lambda call, result, seconds: None,
                 mig: MigAdmin | None = None) -> None:
        self.settings = settings
        self.mig = mig   # an open Nvml where the driver has mig GPUs
        self.mig_lock = threading.Lock()   # one MIG change at a time: the kubelet calls in parallel
        self._claim_locks: dict[str, _ClaimLock] = {}   # only while a call holds or waits for the claim
        self._claim_locks_lock = threading.Lock()
        self.devices = devices
        self.read_claim = read_claim
        self.checkpoint = checkpoint
        self.observe = observe

    @contextmanager
    def _claim_lock(self, uid: str) -> Iterator[None]:
        """One call at a time per claim: an unprepare that overtakes its claim's prepare (a kubelet retry
        after a timeout) waits for it, and so finds what it made."""
        # Counted, and dropped by the last call out: dropped any earlier, a waiter would hold a lock that
        # the next call no longer finds, and the two would run side by side.
        with self._claim_locks_lock:
            entry = self._claim_locks.setdefault(uid, _ClaimLock(threading.Lock()))
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._claim_locks_lock:
                entry.users -= 1
                if entry.users == 0:
                    del self._claim_locks[uid]

    # ---- the two RPCs ----------------------------------------------------------------------
    def NodePrepareResources(self, request, context):  # noqa: N802
        response = dra_pb2.NodePrepareResourcesResponse()
        for claim in request.claims:
            started = time.monotonic()
            answer = response.claims[claim.uid]
            try:
                with self._claim_lock(claim.uid):
                    prepared = self.prepare(claim.namespace, claim.name, claim.uid)
            except PrepareError as err:
                answer.error = str(err)
                log.warning("claim_prepare_failed", claim=f"{claim.namespace}/{claim.name}", uid=claim.uid,
                            reason=str(err))
                self.observe("prepare", "error", time.monotonic() - started)
                continue
            except Exception as err:  # noqa: BLE001 - the API server away, a file that cannot be written
                answer.error = f"preparing ResourceClaim {claim.namespace}/{claim.name} failed: {err}"
                log.error("claim_prepare_failed", claim=f"{claim.namespace}/{claim.name}", uid=claim.uid,
                          reason=str(err)[:300])
                self.observe("prepare", "error", time.monotonic() - started)
                continue
            for device in prepared.devices:
                entry = answer.devices.add(request_names=device.request_names, pool_name=device.pool,
                                           device_name=device.device, cdi_device_ids=device.cdi_ids)
                if device.share_id:
                    entry.share_id = device.share_id
            self.observe("prepare", "ok", time.monotonic() - started)
        return response

    def NodeUnprepareResources(self, request, context):  # noqa: N802
        response = dra_pb2.NodeUnprepareResourcesResponse()
        for claim in request.claims:
            started = time.monotonic()
            answer = response.claims[claim.uid]
            try:
                with self._claim_lock(claim.uid):
                    self.unprepare(claim.namespace, claim.name, claim.uid)
                self.observe("unprepare", "ok", time.monotonic() - started)
            except Exception as err:  # noqa: BLE001 - reported to the kubelet, which retries
                answer.error = f"unpreparing ResourceClaim {claim.namespace}/{claim.name} failed: {err}"
                log.error("claim_unprepare_failed", claim=f"{claim.namespace}/{claim.name}", uid=claim.uid,
                          reason=str(err)[:300])
                self.observe("unprepare", "error", time.monotonic() - started)
        return response

    # ---- what they do ----------------------------------------------------------------------
    def prepare(self, namespace: str, name: str, uid: str) -> PreparedClaim:
        """Prepare claim ``uid`` (idempotent) and return what the kubelet is told."""
        started = time.monotonic()
        with self.checkpoint.lock:
            known = self.checkpoint.claims.get(uid)
            if known is not None and cdi.spec_path(self.settings.cdi_dir, uid).exists():
                log.info("claim_already_prepared", claim=f"{namespace}/{name}", uid=uid)
                return known
        claim = self.read_claim(namespace, name)
        if (claim.get("metadata") or {}).get("uid") != uid:
            raise PrepareError(f"ResourceClaim {namespace}/{name} has UID {(claim.get('metadata') or {}).get('uid')}, "
                               f"not {uid}: it was deleted and made again")
        results = my_results(claim, self.settings.driver, self.settings.node)
        published = self.devices()
        by_request: dict[str, list[tuple[dict, Published]]] = {}
        for result in results:
            gpu = published.get(result.get("device"))
            if gpu is None:
                raise PrepareError(f"ResourceClaim {namespace}/{name}: device {result.get('device')!r} is not one "
                                   f"this node publishes ({', '.join(sorted(published)) or 'none'})")
            by_request.setdefault(result.get("request", ""), []).append((result, gpu))
        prepared = PreparedClaim(namespace, name)
        made: list[tuple[int, MigInstance]] = []
        try:
            edits: dict[str, dict] = {}
            for request_name, entries in by_request.items():
                if any(isinstance(g, PublishedMig) for _, g in entries):
                    self._mig_request(f"{namespace}/{name}", uid, request_name, entries, edits, prepared, made)
                else:
                    self._gpu_request(f"{namespace}/{name}", uid, request_name, entries, edits, prepared)
            with self.checkpoint.lock:
                cdi.write_spec(self.settings.cdi_dir, uid, cdi.claim_spec(uid, edits))
                self.checkpoint.claims[uid] = prepared
                self.checkpoint.save()
        except BaseException:
            self._remove_made(made, f"{namespace}/{name}")
            raise
        log.info("claim_prepared", claim=f"{namespace}/{name}", uid=uid,
                 devices=[d.device for d in prepared.devices], gpus=[d.uuid for d in prepared.devices],
                 seconds=round(time.monotonic() - started, 6))
        return prepared

    def _gpu_request(self, claim: str, uid: str, request_name: str, entries: list[tuple[dict, Published]],
                     edits: dict[str, dict], prepared: PreparedClaim) -> None:
        """Whole GPUs or one MPS share: their grants, CDI edits and answer."""
        gpus = [gpu for _, gpu in entries]
        paths = list(dict.fromkeys([g.device_node for g in gpus] + list(CONTROL_NODES)))
        uuids = [g.gpu.uuid for g in gpus]
        mounts: list[tuple[str, str]] = []
        cores = gib = None   # an MPS share's, recorded in the checkpoint for the MPS daemon's defaults
        if any(g.mode == MODE_MPS for g in gpus):
            if len(entries) != 1:
                raise PrepareError(f"ResourceClaim {claim}: request {request_name!r} was allocated "
                                   f"{len(entries)} devices with MPS among them; an MPS request takes one GPU")
            cores, gib = mps_share(entries[0][0], f"ResourceClaim {claim}")
            pipe = self.settings.mps_pipe_directory
            grants = [new_grant(RESOURCE_MPS_CORE, self.settings.node, uuids, uuids, paths, core=cores, pipe=pipe),
                      new_grant(RESOURCE_MPS_MEMORY, self.settings.node, uuids, uuids, paths, mem_gib=gib)]
            mounts = [(pipe, pipe), (self.settings.mps_shm_directory, CONTAINER_SHM)]
        elif any(g.mode == MODE_TIMESLICE for g in gpus):
            if not all(g.mode == MODE_TIMESLICE for g in gpus):
                raise PrepareError(f"ResourceClaim {claim}: request {request_name!r} mixes time-sliced and "
                                   "exclusive GPUs")
            grants = [new_grant(RESOURCE_GPU_SHARED, self.settings.node, uuids, uuids, paths)]
        else:
            shared = [r.get("device") for r, _ in entries if r.get("shareID") or r.get("consumedCapacity")]
            if shared:
                raise PrepareError(f"ResourceClaim {claim}: {', '.join(map(str, shared))} was allocated as a share, "
                                   "but this node now serves it whole (its mode changed since): delete the pod "
                                   "to have it allocated again")
            grants = [new_grant(RESOURCE_GPU, self.settings.node, uuids, uuids, paths)]
        self._grant_edits(uid, grants, mounts, edits, prepared, [
            (PreparedDevice(request_names=[request_name], pool=result["pool"], device=gpu.name, cdi_ids=[],
                            uuid=gpu.gpu.uuid, share_id=result.get("shareID"), mps_cores=cores,
                            mps_memory_gib=gib), [gpu.device_node])
            for result, gpu in entries])

    def _mig_request(self, claim: str, uid: str, request_name: str, entries: list[tuple[dict, Published]],
                     edits: dict[str, dict], prepared: PreparedClaim, made: list[tuple[int, MigInstance]]) -> None:
        """MIG devices: each made at its placement, granted per profile (``made`` collects what was made,
        for the caller to remove should the claim fail)."""
        if not all(isinstance(g, PublishedMig) for _, g in entries):
            raise PrepareError(f"ResourceClaim {claim}: request {request_name!r} mixes MIG devices and whole GPUs")
        if self.mig is None:
            raise PrepareError(f"ResourceClaim {claim}: this driver has no NVML session for MIG devices")
        instances = []
        for _, mig in entries:
            with self.mig_lock:
                try:
                    instance = self.mig.create_mig_device(mig.gpu.index, mig.placement)
                except MigError as err:
                    raise PrepareError(f"ResourceClaim {claim}: {err}") from None
            made.append((mig.gpu.index, instance))
            if instance.capability_minors is None:
                raise PrepareError(f"ResourceClaim {claim}: MIG device {instance.uuid} has no capability device "
                                   "nodes in the driver's table (/proc/driver/nvidia-caps/mig-minors)")
            log.info("mig_device_made", claim=claim, device=mig.name, gpu=mig.gpu.index, uuid=instance.uuid,
                     gpu_instance=instance.gpu_instance_id, profile=instance.profile)
            instances.append(instance)
        nodes_of = {i.uuid: [mig.parent.device_node, *(capability_device(m) for m in i.capability_minors)]
                    for (_, mig), i in zip(entries, instances)}
        by_profile: dict[str, list[str]] = {}
        for (_, mig), instance in zip(entries, instances):
            by_profile.setdefault(mig.placement.profile, []).append(instance.uuid)
        grants = []
        for profile, uuids in by_profile.items():
            paths = list(dict.fromkeys([p for u in uuids for p in nodes_of[u]] + list(CONTROL_NODES)))
            grants.append(new_grant(mig_resource_name(profile), self.settings.node, uuids, uuids, paths))
        self._grant_edits(uid, grants, [], edits, prepared, [
            (PreparedDevice(request_names=[request_name], pool=result["pool"], device=mig.name, cdi_ids=[],
                            uuid=instance.uuid, gpu_index=mig.gpu.index, gpu_instance_id=instance.gpu_instance_id),
             nodes_of[instance.uuid])
            for (result, mig), instance in zip(entries, instances)])

    def _grant_edits(self, uid: str, grants: list[Grant], mounts: list[tuple[str, str]], edits: dict[str, dict],
                     prepared: PreparedClaim, devices: list[tuple[PreparedDevice, list[str]]]) -> None:
        """One request's ``devices`` (each as the kubelet is told of it, less its CDI ID, and its device
        nodes besides the control nodes) into the claim's CDI ``edits`` and ``prepared``: each device gets
        the request's ``grants``, signed, their variables, its nodes and ``mounts``."""
        env = container_env(grants)
        env.update(env_entry(grant, self.settings.grant_key) for grant in grants)
        for device, paths in devices:
            nodes = [(p, host_device_path(self.settings.device_root, p)) for p in [*paths, *CONTROL_NODES]]
            # A shared GPU can serve two requests of one claim, each with its own share: each gets CDI
            # edits of its own (under one name, the later request's grant would reach both containers).
            key = device.device if device.device not in edits else f"{device.device}-{device.request_names[0]}"
            edits[key] = cdi.container_edits(env, nodes, mounts)
            prepared.devices.append(replace(device, cdi_ids=[cdi.device_id(uid, key)]))

    def _remove_made(self, made: list[tuple[int, MigInstance]], claim: str) -> None:
        for index, instance in made:
            try:
                with self.mig_lock:
                    self.mig.destroy_mig_device(index, instance.gpu_instance_id)
                log.info("mig_device_removed", claim=claim, gpu=index, uuid=instance.uuid,
                         reason="the claim's prepare failed")
            except MigError as err:
                log.error("mig_device_remove_failed", claim=claim, gpu=index, uuid=instance.uuid, reason=str(err))

    def remove_mig_devices(self, devices: list[PreparedDevice], claim: str) -> None:
        """Remove the MIG devices made for a claim (one gone already is fine); MigError when one is still
        in use, so the kubelet retries the unprepare."""
        for device in devices:
            if device.gpu_instance_id is None or device.gpu_index is None or self.mig is None:
                continue
            with self.mig_lock:
                current = self.mig.mig_device(device.gpu_index, device.gpu_instance_id)
                if current is None or current.uuid != device.uuid:
                    log.info("mig_device_already_gone", claim=claim, gpu=device.gpu_index, uuid=device.uuid)
                    continue
                self.mig.destroy_mig_device(device.gpu_index, device.gpu_instance_id)
            log.info("mig_device_removed", claim=claim, gpu=device.gpu_index, uuid=device.uuid,
                     gpu_instance=device.gpu_instance_id, reason="claim unprepared")

    def unprepare(self, namespace: str, name: str, uid: str) -> None:
        """Forget claim ``uid`` and remove its CDI spec (nothing to do for an unknown claim)."""
        with self.checkpoint.lock:
            known = self.checkpoint.claims.get(uid)
        if known is not None:
            self.remove_mig_devices(known.devices, f"{namespace}/{name}")   # first: a failure keeps the claim known
        with self.checkpoint.lock:
            known = self.checkpoint.claims.pop(uid, None)
            removed = cdi.remove_spec(self.settings.cdi_dir, uid)
            if known is not None:
                self.checkpoint.save()
        if known is None and not removed:
            log.info("claim_unprepare_unknown", claim=f"{namespace}/{name}", uid=uid)
            return
        log.info("claim_unprepared", claim=f"{namespace}/{name}", uid=uid,
                 devices=[d.device for d in known.devices] if known else [])
