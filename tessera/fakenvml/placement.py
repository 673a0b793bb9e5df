"""MIG layout rules: which profiles fit together on one GPU, and where each one sits.

A layout is a list of profile names (optionally with a fixed ``start``). It is valid when no
profile is asked for more often than the card allows, the compute slices add up to at most the
card's (7 on A100/H100, 4 on A30), at most one media-extension (``+me``) instance exists, and
every instance gets an allowed start whose memory slices overlap no other instance. Placements
are searched largest profile first, the order NVIDIA recommends creating instances in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tessera.fakenvml.catalog import GpuModel, MigProfile


class MigLayoutError(ValueError):
    """A MIG layout that the card cannot hold."""


@dataclass(frozen=True)
class PlacedInstance:
    """One MIG instance of a layout, placed: GPU-instance id and memory-slice placement."""

    profile: MigProfile
    gpu_instance_id: int
    start: int

    @property
    def size(self) -> int:
        """Memory slices occupied."""
        return self.profile.size


def place_layout(model: GpuModel, wanted: list[tuple[str, int | None]], where: str) -> tuple[PlacedInstance, ...]:
    """Place a MIG layout on ``model``.

    ``wanted`` holds ``(profile name, fixed start or None)`` pairs; ``where`` names the layout in
    error messages (``gpus[0].mig``). GPU-instance ids are 1.. in creation order (largest first).
    """
    if not model.mig_capable:
        raise MigLayoutError(f"{where}: {model.key} does not support MIG")
    profiles: list[tuple[MigProfile, int | None]] = []
    for name, start in wanted:
        try:
            profile = model.mig_profile(name)
        except ValueError as err:
            raise MigLayoutError(f"{where}: {err}") from None
        if start is not None and start not in profile.starts:
            allowed = ", ".join(map(str, profile.starts))
            raise MigLayoutError(f"{where}: {name} may start at memory slice {allowed}, not {start}")
        profiles.append((profile, start))
    _check_counts(model, [p for p, _ in profiles], where)
    order = sorted(range(len(profiles)), key=lambda i: (-profiles[i][0].size, -profiles[i][0].slices, i))
    starts = _search(model, [profiles[i] for i in order], [], set())
    if starts is None:
        names = " + ".join(p.name for p, _ in profiles)
        raise MigLayoutError(
            f"{where}: MIG layout {names} does not fit {model.key}: no placement keeps the instances "
            f"on allowed starts without overlapping memory slices"
        )
    placed = [PlacedInstance(profiles[i][0], gi, s) for gi, (i, s) in enumerate(zip(order, starts), start=1)]
    return tuple(placed)


def _check_counts(model: GpuModel, profiles: list[MigProfile], where: str) -> None:
    counts = Counter(p.name for p in profiles)
    for name, n in counts.items():
        limit = model.mig_profile(name).instances
        if n > limit:
            raise MigLayoutError(f"{where}: {n} x {name} asked, {model.key} holds at most {limit}")
    media = sum(n for name, n in counts.items() if name.endswith("+me"))
    if media > 1:
        raise MigLayoutError(f"{where}: at most one +me (media extension) instance fits a GPU, {media} asked")
    slices = sum(p.slices for p in profiles)
    if slices > model.mig_compute_slices:
        raise MigLayoutError(
            f"{where}: the layout needs {slices} compute slices, {model.key} has {model.mig_compute_slices}"
        )


def _search(model: GpuModel, todo: list[tuple[MigProfile, int | None]], chosen: list[int],
            used: set[int]) -> list[int] | None:
    """Depth-first search for starts; small enough (at most 7 instances) to be exhaustive."""
    if len(chosen) == len(todo):
        return list(chosen)
    profile, fixed = todo[len(chosen)]
    candidates = profile.starts if fixed is None else (fixed,)
    for start in candidates:
        if start not in profile.starts:
            continue
        slots = set(range(start, start + profile.size))
        if slots & used or max(slots) >= model.mig_memory_slices:
            continue
        chosen.append(start)
        found = _search(model, todo, chosen, used | slots)
        if found is not None:
            return found
        chosen.pop()
    return None


def check_addition(model: GpuModel, existing: list[PlacedInstance], new: PlacedInstance, where: str) -> None:
    """MigLayoutError unless ``new`` fits beside the ``existing`` instances as placed: an allowed start,
    no memory slice shared, the profile and compute-slice limits kept (what the driver checks when a GPU
    instance is made with a placement)."""
    if new.start not in new.profile.starts or new.start + new.size > model.mig_memory_slices:
        allowed = ", ".join(map(str, new.profile.starts))
        raise MigLayoutError(f"{where}: {new.profile.name} may start at memory slice {allowed}, not {new.start}")
    taken = {slot for p in existing for slot in range(p.start, p.start + p.size)}
    clash = sorted(taken & set(range(new.start, new.start + new.size)))
    if clash:
        raise MigLayoutError(f"{where}: memory slices {clash} are taken by another GPU instance")
    _check_counts(model, [p.profile for p in existing] + [new.profile], where)
