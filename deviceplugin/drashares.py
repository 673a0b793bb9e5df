"""The MPS shares the DRA driver prepared, as the MPS daemon's defaults must allow them.

The device plugin owns the node's MPS control daemon: its supervisor (:mod:`deviceplugin.mpsd`) is the one
writer of the daemon's defaults, also for the DRA driver's MPS GPUs (``draplugin.gpu_modes`` ``mps``),
whose clients the same daemon serves. The driver records each prepared share in its checkpoint
(``draplugin.checkpoint_path``: per claim, per device its ``uuid``, ``mps_cores`` and
``mps_memory_gib``); this reads it, read-only, whenever it changed. Per DRA MPS GPU index it gives
(largest core share in %, largest memory share in GiB), as the device plugin's own
``NodeDevices.largest_mps_grants``:

- no share prepared on the GPU (or no checkpoint yet: the driver writes it at its first prepare):
  (0, 0), so the memory cap is the whole card, as on a device-plugin GPU without grants;
- shares: the largest cores and the largest GiB (a GiB past the card's counts as the card's);
- a device of the GPU recorded without its share (a checkpoint from before the driver recorded
  them, or a claim prepared while the GPU was whole): unknown, so (100, whole card). Never a cap
  below what a client may hold.

The file is on the node's disk, written by another daemon, so nothing in it is believed beyond its
shape: only devices of the driver's MPS GPUs count (by UUID, so no entry reaches a device-plugin
GPU), and a file that cannot be read as a checkpoint (not a regular file, over ``MAX_BYTES``, not
JSON, another shape, a share that is not 1..100 cores and whole GiB), or a driver folder that is not
there (not mounted), makes every DRA MPS GPU unknown and is logged once, as
``dra_checkpoint_unreadable`` (again only when the reason changes). Nothing in it raises.
"""

from __future__ import annotations

import json
import os
import stat

from tessera.gpu import GpuInfo
from tessera.log import get_logger

log = get_logger("deviceplugin")

CHECKPOINT_VERSION = 1   # draplugin.checkpoint's
MAX_BYTES = 8 * 1024 * 1024   # thousands of claims fit; a file past this is not the driver's
MAX_CORES = 100


class Unreadable(ValueError):
    """The checkpoint cannot be read as one; the message says why."""


class DraMpsShares:
    """The largest share per DRA MPS GPU, from the driver's checkpoint at ``path``."""

    def __init__(self, path: str, gpus: list[GpuInfo]) -> None:
        self.path = path
        self.gpus = sorted(gpus, key=lambda g: g.index)   # the DRA driver's MPS GPUs
        self._by_uuid = {g.uuid: g for g in gpus}
        self._seen: tuple | None = None   # the file version the answer is from
        self._largest = self._unknown()
        self._problem: str | None = None

    def largest(self) -> dict[int, tuple[int, int]]:
        """Per DRA MPS GPU index: (largest core share in %, largest memory share in GiB); (0, 0) where
        none is prepared, (100, the card's GiB) where unknown."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if os.path.isdir(os.path.dirname(self.path) or "."):
                return self._settle(None, None, {g.index: (0, 0) for g in self.gpus})
            return self._settle(None, f"the DRA driver's folder {os.path.dirname(self.path)} is not there "
                                      "(not mounted?)", self._unknown())
        except OSError as err:
            return self._settle(None, str(err), self._unknown())
        seen = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return dict(self._largest)
        try:
            largest = self._shares(_read(self.path))
        except (Unreadable, OSError, ValueError, RecursionError) as err:
            return self._settle(seen, str(err) or type(err).__name__, self._unknown())
        except Exception as err:  # noqa: BLE001 - another daemon's file: nothing in it may stop the supervisor
            return self._settle(seen, f"{type(err).__name__}: {err}", self._unknown())
        return self._settle(seen, None, largest)

    def _settle(self, seen: tuple | None, problem: str | None, largest: dict[int, tuple[int, int]]
                ) -> dict[int, tuple[int, int]]:
        if problem is not None and problem != self._problem:
            log.warning("dra_checkpoint_unreadable", path=self.path, reason=problem[:300],
                        effect="the MPS daemon's defaults leave the DRA driver's MPS GPUs whole")
        elif problem is None and self._problem is not None:
            log.info("dra_checkpoint_readable", path=self.path)
        self._seen, self._problem, self._largest = seen, problem, largest
        return dict(largest)

    def _unknown(self) -> dict[int, tuple[int, int]]:
        return {g.index: (MAX_CORES, _gib(g)) for g in self.gpus}

    def _shares(self, doc: object) -> dict[int, tuple[int, int]]:
        if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
            raise Unreadable(f"not a version {CHECKPOINT_VERSION} checkpoint")
        claims = doc.get("claims")
        if not isinstance(claims, dict):
            raise Unreadable("no claims")
        largest = {g.index: (0, 0) for g in self.gpus}
        for uid, claim in claims.items():
            devices = claim.get("devices") if isinstance(claim, dict) else None
            if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
                raise Unreadable(f"claim {str(uid)[:64]}: no device list")
            for device in devices:
                uuid = device.get("uuid")
                if not isinstance(uuid, str):
                    raise Unreadable(f"claim {str(uid)[:64]}: a device without a UUID")
                gpu = self._by_uuid.get(uuid)
                if gpu is None:
                    continue   # not a DRA MPS GPU of this node: a whole GPU, a MIG device, another's
                cores, gib = device.get("mps_cores"), device.get("mps_memory_gib")
                if cores is None and gib is None:   # recorded before shares were, or while the GPU was whole
                    largest[gpu.index] = (MAX_CORES, _gib(gpu))
                    continue
                if not _whole(cores, MAX_CORES) or not _whole(gib, None):
                    raise Unreadable(f"claim {str(uid)[:64]}: GPU {gpu.index}'s share of {str(cores)[:16]} cores "
                                     f"and {str(gib)[:16]} GiB is not an MPS share")
                core, mem = largest[gpu.index]
                largest[gpu.index] = (max(core, cores), max(mem, min(gib, _gib(gpu))))
        return largest


def _gib(gpu: GpuInfo) -> int:
    return gpu.memory_total_mib // 1024


def _whole(value: object, most: int | None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= 1
            and (most is None or value <= most))


def _read(path: str) -> object:
    """The JSON document at ``path``: a regular file (no link followed, no FIFO waited on) of at most
    ``MAX_BYTES``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise Unreadable(f"larger than {MAX_BYTES} bytes")
    return json.loads(data)


def dra_gpus_in_use(checkpoint_path: str, served_path: str, gpus: list[GpuInfo]) -> dict[int, str]:
    """GPU index -> why the DRA driver still has that GPU: a claim prepared on it (its checkpoint) or the
    driver serving it (the UUIDs its running process lists in ``served_path``). A file that is there but
    cannot be read counts as holding every GPU (a config edit then waits rather than guessing)."""
    by_uuid = {g.uuid: g.index for g in gpus}
    out: dict[int, str] = {}
    for path, what in ((served_path, "served by the DRA driver"), (checkpoint_path, "a claim prepared on it")):
        try:
            doc = _read(path)
        except FileNotFoundError:
            continue
        except (Unreadable, OSError, ValueError, RecursionError) as err:
            return {g.index: f"{path} unreadable: {err}" for g in gpus}
        entries = []
        if path == served_path and isinstance(doc, dict) and isinstance(doc.get("uuids"), list):
            entries = [{"uuid": u} for u in doc["uuids"]]
        elif isinstance(doc, dict) and isinstance(doc.get("claims"), dict):
            entries = [d for c in doc["claims"].values() if isinstance(c, dict)
                       for d in (c.get("devices") or []) if isinstance(d, dict)]
        for entry in entries:
            uuid = entry.get("uuid")
            index = by_uuid.get(uuid) if isinstance(uuid, str) else None
            if index is None:
                index = entry.get("gpu_index")   # a MIG device made for a claim: its GPU's index
            if isinstance(index, int) and index in by_uuid.values():
                out.setdefault(index, what)
    return out
