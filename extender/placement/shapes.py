"""Typical task shapes as written (``mps-core=50,mps-memory=8``, ``gpu=1,models=T4|A10``): the syntax of
``tessera inspect --shape`` and of the config's ``extender.typical_shapes``, read by the extender's own
request parser.

Fragmentation (FGD) is always relative to typical task shapes. The extender learns them from the pods
it binds (``extender.placement.fragmentation.ShapeBook``); inspect learns them the same way from the pods that
hold shares now (the last ``window`` by creation time, each read by the extender's own
``pod_request`` and ``shape_of``), so its numbers are the extender's for the same shapes. With no
such pod it falls back to ``DEFAULT_SHAPES``; ``--shape`` replaces both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from extender.placement.fragmentation import TaskShape, shape_of
from tessera.podrequest import KIND_GPU, KIND_MPS, KIND_MPS_WHOLE, LABEL_GPU_PRODUCT, RequestError, pod_request


# Used when the cluster holds no pod of a shape the capacity model knows: one whole GPU, and MPS shares
# of a quarter and a half of a GPU with their proportional memory.
DEFAULT_SHAPES = ("nvidia.com/gpu=1", "nvidia.com/mps-core=50", "nvidia.com/mps-core=25")
DEFAULT_WINDOW = 1000  # the extender's shape_window default


class ShapeError(ValueError):
    """A ``--shape`` that is not a request Tessera can read; the message says why."""


def parse_shape(text: str) -> TaskShape:
    """``mps-core=50,mps-memory=8`` (``nvidia.com/`` may be left out; ``cpu=`` and ``memory=`` too) as a
    task shape, read by the extender's request parser; ``models=T4|A10`` for a pod that accepts only
    those GPU models (``nvidia.com/gpu.product`` In them)."""
    limits: dict[str, str] = {}
    models: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise ShapeError(f"shape {text!r}: expected RESOURCE=AMOUNT[,RESOURCE=AMOUNT...]")
        name = name.strip()
        if name == "models":
            models = [m.strip() for m in value.split("|") if m.strip()]
            continue
        if "/" not in name and name not in ("cpu", "memory"):
            name = "nvidia.com/" + name
        limits[name] = value.strip()
    spec: dict = {"containers": [{"name": "main", "resources": {"limits": limits, "requests": dict(limits)}}]}
    if models:
        term = {"matchExpressions": [{"key": LABEL_GPU_PRODUCT, "operator": "In", "values": models}]}
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                             {"nodeSelectorTerms": [term]}}}
    pod = {"metadata": {"name": "shape", "namespace": "default"}, "spec": spec}
    try:
        shape = shape_of(pod_request(pod))
    except RequestError as exc:
        raise ShapeError(f"shape {text!r}: {exc}") from None
    if shape is None or shape.ask is None:
        raise ShapeError(f"shape {text!r}: fragmentation counts whole GPUs and MPS shares only "
                         "(nvidia.com/gpu, nvidia.com/mps-core)")
    return shape


def shape_counts(texts: Iterable[str], where: str = "") -> Counter[TaskShape]:
    """Shapes as written (``parse_shape``), counted: a repeated shape weighs more. ``where`` names the
    list in errors (``where[i]: shape ...``)."""
    counts: Counter[TaskShape] = Counter()
    for i, text in enumerate(texts):
        try:
            counts[parse_shape(text)] += 1
        except ShapeError as exc:
            raise ShapeError(f"{where}[{i}]: {exc}" if where else str(exc)) from None
    return counts


def learned_shapes(pods: Iterable[dict], window: int = DEFAULT_WINDOW) -> Counter[TaskShape]:
    """Shapes of the newest ``window`` pods (oldest first, as the extender observed them at bind)."""
    ordered = sorted(pods, key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or ""))
    counts: Counter[TaskShape] = Counter()
    for pod in ordered[-window:]:
        try:
            shape = shape_of(pod_request(pod))
        except RequestError:
            continue
        if shape is not None and shape.ask is not None:
            counts[shape] += 1
    return counts


def describe(shape: TaskShape) -> str:
    """A shape as a user writes its request: ``mps-core=50 mps-memory=8 cpu=2``."""
    ask = shape.ask
    parts = []
    if ask is None:
        parts.append("no GPU")
    elif ask.kind == KIND_MPS:
        parts.append(f"mps-core={ask.core}")
        if ask.memory_gib is not None:
            parts.append(f"mps-memory={ask.memory_gib}")
    elif ask.kind == KIND_MPS_WHOLE:
        parts.append(f"mps-core={100 * ask.count}")
    elif ask.kind == KIND_GPU:
        parts.append(f"gpu={ask.count}")
    if shape.cpu_milli:
        parts.append(f"cpu={shape.cpu_milli}m")
    if shape.memory_bytes:
        parts.append(f"memory={shape.memory_bytes // 2**20}Mi")
    if shape.models is not None:
        parts.append(f"models {shape.models.describe()}")
    return " ".join(parts)
