"""MIG instances made and removed while the fake node runs, as control-file commands.

A process that makes a GPU instance (:mod:`tessera.fakenvml.miglifecycle`) writes the command to the
node's control file, and every process of the node applies it in file order, so all of them agree on
what exists. Each command names the instance in full (GPU-instance id, profile, start; the compute
instance's MIG UUID), so applying it needs nothing but the state before it. A command the state does
not allow (a placement taken, an id in use, an instance still holding processes) is rejected in every
process alike; the writer sees its instance absent and reports the NVML error the driver would.

- ``create_gi``: ``{"gpu", "gi", "profile", "start"}``: a GPU instance without a compute instance.
- ``create_ci``: ``{"gpu", "gi", "uuid"}``: its compute instance (one spanning the GPU instance); the
  MIG device with that UUID now exists.
- ``destroy_ci``: ``{"gpu", "gi"}``; ``destroy_gi``: ``{"gpu", "gi"}`` (only once its compute instance is gone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.fakenvml.description import MigSpec
from tessera.fakenvml.placement import PlacedInstance, check_addition

if TYPE_CHECKING:
    from tessera.fakenvml.state import GpuState

MAX_GPU_INSTANCE_ID = 14   # the driver's capability table has GPU instances 0..14 per GPU


def apply_mig_command(gpu: "GpuState", cmd: dict) -> None:
    """Apply one MIG lifecycle command to ``gpu``; ValueError (logged and skipped by the caller) when
    the state does not allow it."""
    op, gi = cmd["op"], int(cmd["gi"])
    where = f"GPU {gpu.spec.index}"
    if not gpu.spec.mig_enabled:
        raise ValueError(f"{where} is not in MIG mode")
    if op == "create_gi":
        if not 1 <= gi <= MAX_GPU_INSTANCE_ID or gpu.gpu_instance(gi) is not None:
            raise ValueError(f"{where}: GPU instance id {gi} is in use or out of range")
        placed = PlacedInstance(gpu.spec.model.mig_profile(str(cmd["profile"])), gi, int(cmd["start"]))
        check_addition(gpu.spec.model, gpu.gpu_instances(), placed, where)
        gpu.bare_gis[gi] = placed
    elif op == "create_ci":
        placed = gpu.bare_gis.get(gi)
        if placed is None:
            raise ValueError(f"{where}: no GPU instance {gi} without a compute instance")
        uuid = str(cmd["uuid"])
        if not uuid.startswith("MIG-"):
            raise ValueError(f"{where}: {uuid!r} is not a MIG UUID")
        del gpu.bare_gis[gi]
        gpu.mig.append(MigSpec(placed, uuid))
    elif op == "destroy_ci":
        found = next((m for m in gpu.mig if m.gpu_instance_id == gi), None)
        if found is None:
            raise ValueError(f"{where}: GPU instance {gi} has no compute instance")
        if any(p.gpu_instance_id == gi for p in gpu.processes):
            raise ValueError(f"{where}: GPU instance {gi} has processes")
        gpu.mig.remove(found)
        gpu.bare_gis[gi] = found.placed
        gpu.gi_activity.pop(gi, None)
    elif op == "destroy_gi":
        if gi not in gpu.bare_gis:
            raise ValueError(f"{where}: GPU instance {gi} does not exist or still has its compute instance")
        del gpu.bare_gis[gi]
