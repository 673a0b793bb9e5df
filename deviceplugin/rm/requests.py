"""What a set of allocated IDs means, or why it cannot be given (Allocate answers from IDs alone)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from deviceplugin.rm.devices import CORES_PER_GPU, Device
from tessera import RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY


class RequestError(ValueError):
    """IDs that cannot be allocated together; the message is what ``kubectl describe pod`` shows."""


@dataclass(frozen=True)
class Request:
    """One resource's IDs for one container, understood."""

    resource: str
    ids: tuple[str, ...]
    devices: tuple[Device, ...]  # one per GPU or MIG instance, in index order
    core: int | None = None
    mem_gib: int | None = None

    @property
    def gpu_uuids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.gpu_uuid for d in self.devices))

    @property
    def visible(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.visible_uuid for d in self.devices))


def check_request(resource: str, ids: list[str], known: dict[str, Device],
                  memory_gib: dict[str, int]) -> Request:
    """Understand ``ids`` of ``resource``; RequestError with a reason a user reads."""
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise RequestError(f"{resource}: unknown device IDs {unknown[:3]} (the plugin does not offer them)")
    if not ids:
        raise RequestError(f"{resource}: no device IDs to allocate")
    repeated = [(i, n) for i, n in Counter(ids).items() if n > 1]
    if repeated:  # counted as distinct devices, one ID sent 100 times would be a whole GPU's share
        raise RequestError(f"{resource}: device ID {repeated[0][0]} is repeated ({repeated[0][1]} times); "
                           "each device is allocated once (the kubelet never sends an ID twice)")
    devices = [known[i] for i in ids]
    per_gpu: dict[str, list[Device]] = {}
    for device in devices:
        per_gpu.setdefault(device.gpu_uuid, []).append(device)
    firsts = sorted((group[0] for group in per_gpu.values()), key=lambda d: d.gpu_index)
    if resource == RESOURCE_MPS_CORE:
        count = len(ids)
        if count > CORES_PER_GPU and count % CORES_PER_GPU:
            raise RequestError(f"{resource}: {count} is over 100 and not whole hundreds; ask 1..100 for a share "
                               "of one GPU, or 200, 300, ... for that many whole GPUs")
        if len(per_gpu) > 1 and any(len(g) != CORES_PER_GPU for g in per_gpu.values()):
            spread = ", ".join(f"{len(g)} on GPU {g[0].gpu_index}" for g in per_gpu.values())
            raise RequestError(f"{resource}: {count} cores span several GPUs ({spread}); an MPS share comes from "
                               "one GPU")
        return Request(resource, tuple(ids), tuple(firsts), core=count)
    if resource == RESOURCE_MPS_MEMORY:
        count = len(ids)
        if len(per_gpu) > 1:
            partial = [g for u, g in per_gpu.items() if len(g) != memory_gib.get(u, 0)]
            if partial:
                card = min(memory_gib.get(u, 0) for u in per_gpu)
                raise RequestError(f"{resource}: {count} GiB is beyond one card ({card} GiB) and does not make whole "
                                   "cards; memory comes from the GPU of the mps-core share")
        return Request(resource, tuple(ids), tuple(firsts), mem_gib=count)
    return Request(resource, tuple(ids), tuple(sorted(devices, key=lambda d: (d.gpu_index, d.id))))
