"""The claims this driver prepared, on disk, so that a restart loses nothing.

The kubelet calls NodePrepareResources again for a claim after its own restart and the driver's, and
NodeUnprepareResources once the last pod using it is gone, possibly after a restart of either. The
checkpoint holds, per claim UID, what the answer was (devices, CDI IDs) and the grant's nonce, so a
repeated prepare gives the same answer (the container already started with that grant), and an
unprepare after a restart still finds what to remove. Written whole and renamed, mode 0600.

An MPS share's device also records the share (``mps_cores``, ``mps_memory_gib``): the device plugin,
which owns the node's MPS control daemon, reads them (read-only, :mod:`deviceplugin.drashares`) to keep
the daemon's defaults at or above the largest share on each GPU. The two keys are written only where
set, so a checkpoint without MPS claims stays readable by a driver from before them; a device of an
MPS GPU recorded without them (a checkpoint from before) counts there as a share of unknown size.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from draplugin.privatefile import write_private_json

CHECKPOINT_VERSION = 1


@dataclass
class PreparedDevice:
    """One allocated device as NodePrepareResources answered it."""

    request_names: list[str]
    pool: str
    device: str
    cdi_ids: list[str]
    uuid: str
    share_id: str | None = None   # an MPS GPU's share: the allocation's shareID
    gpu_index: int | None = None  # a MIG device made for the claim: its GPU's index and GPU-instance id
    gpu_instance_id: int | None = None
    mps_cores: int | None = None        # an MPS share's cores (1..100) and memory (whole GiB), as granted
    mps_memory_gib: int | None = None


SHARE_FIELDS = ("mps_cores", "mps_memory_gib")   # written only where set


def _device_doc(device: PreparedDevice) -> dict:
    doc = asdict(device)
    for key in SHARE_FIELDS:
        if doc[key] is None:
            del doc[key]
    return doc


@dataclass
class PreparedClaim:
    """One prepared claim."""

    namespace: str
    name: str
    devices: list[PreparedDevice] = field(default_factory=list)


class CheckpointError(ValueError):
    """The checkpoint file cannot be read as one; the message says which file and why."""


class Checkpoint:
    """Prepared claims by UID, saved to ``path`` on every change."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()
        self.claims: dict[str, PreparedClaim] = self._load()

    def _load(self) -> dict[str, PreparedClaim]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise CheckpointError(f"checkpoint {self.path}: {err}") from None
        if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"checkpoint {self.path}: not a version {CHECKPOINT_VERSION} checkpoint")
        try:
            return {uid: PreparedClaim(c["namespace"], c["name"], [PreparedDevice(**d) for d in c["devices"]])
                    for uid, c in doc["claims"].items()}
        except (KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"checkpoint {self.path}: malformed claim entry ({err})") from None

    def save(self) -> None:
        """Write the claims (call with ``lock`` held)."""
        doc = {"version": CHECKPOINT_VERSION, "claims": {
            uid: {"namespace": c.namespace, "name": c.name, "devices": [_device_doc(d) for d in c.devices]}
            for uid, c in sorted(self.claims.items())}}
        write_private_json(self.path, doc, indent=1)
