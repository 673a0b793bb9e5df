"""A pod's Tessera request, read from its spec: what each container asks of a GPU, and the pod's CPU,
memory and GPU-model constraint. The one parser of a pod's request, with one set of rules, for the
admission webhook, the extender's verbs and cache, ``tessera inspect`` and the device plugin's pod watch.

Units and rules are those of ARCHITECTURE.md ("Resources and units"):

- ``nvidia.com/gpu: N``: N whole GPUs in ``exclusive`` mode.
- ``nvidia.com/mig-<profile>: N``: N MIG instances of that profile.
- ``nvidia.com/mps-core: 1..100`` with ``nvidia.com/mps-memory: GiB``: a share of one GPU in ``mps``
  mode; ``mps-core`` in whole hundreds (200, 300, ...) asks for that many whole GPUs through MPS with
  all their memory. Without ``mps-memory`` the share gets core/100 of the card's GiB, rounded down,
  at least 1 (the webhook writes that number at creation when it can tell the card).
- ``nvidia.com/gpu.shared: N``: N time-sliced replicas.

Malformed requests raise ``RequestError`` with a message the user reads; nothing is rounded silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tessera import (
    RESOURCE_GPU,
    RESOURCE_GPU_SHARED,
    RESOURCE_MIG_PREFIX,
    RESOURCE_MPS_CORE,
    RESOURCE_MPS_MEMORY,
    mig_resource_name,
)
from tessera.quantity import QuantityError, cpu_millis, memory_bytes, parse_quantity

LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"

# What a container asks of a GPU.
KIND_GPU = "gpu"              # whole exclusive GPUs
KIND_MIG = "mig"              # MIG instances of one profile
KIND_MPS = "mps"              # a share of one GPU: core percent and GiB
KIND_MPS_WHOLE = "mps-whole"  # whole GPUs through MPS (mps-core in hundreds)
KIND_TIMESLICE = "timeslice"  # time-sliced replicas

MODE_OF_KIND = {KIND_GPU: "exclusive", KIND_MIG: "mig", KIND_MPS: "mps", KIND_MPS_WHOLE: "mps",
                KIND_TIMESLICE: "timeslice"}


# Request shapes seen by this process -> their short keys (bounded by the variety of shapes, not pods).
_SHAPE_KEYS: dict[tuple, str] = {}


class RequestError(ValueError):
    """A pod whose Tessera request cannot be honoured as written; the message says why."""


@dataclass(frozen=True)
class GpuAsk:
    """What one container asks of the GPUs of its node."""

    kind: str
    count: int = 1                 # GPUs (gpu, mps-whole), instances (mig), replicas (timeslice); 1 for a share
    core: int = 0                  # mps share: percent of one GPU's SMs (1..100)
    memory_gib: int | None = None  # mps share: GiB on the same GPU; None: core/100 of the card, at least 1
    profile: str = ""              # mig: the profile, e.g. 1g.10gb

    @property
    def mode(self) -> str:
        """The GPU mode that serves this ask."""
        return MODE_OF_KIND[self.kind]

    def memory_on(self, card_gib: int) -> int:
        """GiB this share takes on a card of ``card_gib`` (its own number, else the proportional share)."""
        if self.memory_gib is not None:
            return self.memory_gib
        return max(1, self.core * card_gib // 100)

    @property
    def cores(self) -> int:
        """GPU capacity asked, in cores (100 per GPU); MIG and time-slice asks count as their GPU count."""
        if self.kind == KIND_MPS:
            return self.core
        return 100 * self.count if self.kind in (KIND_GPU, KIND_MPS_WHOLE) else 0

    def describe(self) -> str:
        """The ask in words, for reasons: ``a GPU with 50 mps-core and 8 GiB free``. Never a ``%``:
        kube-scheduler passes the extender's reasons to its event recorder as a format string, so
        ``50% cores`` reached ``kubectl describe`` as ``50%!c(MISSING)ores``."""
        if self.kind == KIND_MPS:
            mem = f"{self.memory_gib} GiB" if self.memory_gib is not None else "its share of memory"
            return f"a GPU with {self.core} mps-core and {mem} free"
        if self.kind in (KIND_GPU, KIND_MPS_WHOLE):
            mode = "exclusive" if self.kind == KIND_GPU else "mps"
            n = self.count
            return f"{n} free whole {mode} GPU{'s' if n != 1 else ''}"
        if self.kind == KIND_MIG:
            n = self.count
            return f"{n} free MIG {self.profile} instance{'s' if n != 1 else ''}"
        return f"{self.count} free time-slice replica{'s' if self.count != 1 else ''}"


@dataclass(frozen=True)
class ContainerRequest:
    """One container: its name and its GPU ask (None: it uses no GPU)."""

    name: str
    ask: GpuAsk | None


@dataclass(frozen=True)
class ModelConstraint:
    """Which GPU models a pod accepts, from ``nvidia.com/gpu.product`` in its node selector and affinity.

    ``terms`` are ORed (as nodeSelectorTerms are); each is (models In, or None for any; models NotIn).
    ``nodeSelector`` narrows every term.
    """

    terms: tuple[tuple[frozenset[str] | None, frozenset[str]], ...]

    def allows(self, model: str) -> bool:
        """Whether a node of this GPU model satisfies the constraint."""
        for allowed, refused in self.terms:
            if (allowed is None or model in allowed) and model not in refused:
                return True
        return False

    def describe(self) -> str:
        parts = []
        for allowed, refused in self.terms:
            bits = []
            if allowed is not None:
                bits.append(f"In [{', '.join(sorted(allowed))}]")
            if refused:
                bits.append(f"NotIn [{', '.join(sorted(refused))}]")
            parts.append(" and ".join(bits) or "any")
        return " or ".join(parts)


@dataclass(frozen=True)
class PodRequest:
    """Everything placement needs to know about a pod.

    ``key`` identifies the request's shape (asks, CPU, memory, models): two pods with the same key fit
    the same nodes, so caches key on it. ``name`` is ``namespace/name`` for messages and grants.
    """

    containers: tuple[ContainerRequest, ...]
    cpu_milli: int = 0
    memory_bytes: int = 0
    models: ModelConstraint | None = None
    workload: str = ""
    policy: str = ""
    name: str = ""
    uid: str = ""
    asks: tuple[GpuAsk, ...] = field(init=False, compare=False)
    key: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        asks = tuple(c.ask for c in self.containers if c.ask is not None)
        object.__setattr__(self, "asks", asks)
        shape = (asks, self.cpu_milli, self.memory_bytes, self.models)
        key = _SHAPE_KEYS.get(shape)
        if key is None:
            key = _SHAPE_KEYS[shape] = f"r{len(_SHAPE_KEYS)}"
        object.__setattr__(self, "key", key)

    @property
    def gpu_cores(self) -> int:
        """GPU capacity asked in cores (100 per GPU), summed over containers."""
        return sum(a.cores for a in self.asks)


def requested_devices(ask: GpuAsk | None) -> dict[str, int]:
    """How many device IDs of each Tessera resource a container with ``ask`` requests of the kubelet."""
    if ask is None:
        return {}
    if ask.kind in (KIND_MPS, KIND_MPS_WHOLE):
        out = {RESOURCE_MPS_CORE: ask.core if ask.kind == KIND_MPS else 100 * ask.count}
        if ask.memory_gib is not None:
            out[RESOURCE_MPS_MEMORY] = ask.memory_gib
        return out
    if ask.kind == KIND_GPU:
        return {RESOURCE_GPU: ask.count}
    if ask.kind == KIND_MIG:
        return {mig_resource_name(ask.profile): ask.count}
    return {RESOURCE_GPU_SHARED: ask.count}


def simple_request(ask: GpuAsk | None, cpu_milli: int = 0, memory_bytes: int = 0,
                   models: ModelConstraint | None = None, name: str = "", workload: str = "") -> PodRequest:
    """A one-container request, as the replay and tests build them."""
    return PodRequest(containers=(ContainerRequest("main", ask),), cpu_milli=cpu_milli,
                      memory_bytes=memory_bytes, models=models, name=name, workload=workload)


def pod_request(pod: dict[str, Any], workload_label: str = "") -> PodRequest:
    """Read a pod (Kubernetes JSON as a dict) into a PodRequest; raises RequestError on a malformed one.

    CPU and memory are summed as kube-scheduler's resource fit does: the app containers and restartable
    (sidecar) init containers add up, a plain init container counts while it runs alone, and the pod's
    overhead is added. Tessera resources are read from app containers only.
    """
    if not isinstance(pod, dict):
        raise RequestError("pod: expected a JSON object")
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"
    containers = []
    cpu = mem = 0
    for c in spec.get("containers") or []:
        cname = c.get("name", "")
        requests = _effective(c, cname)
        containers.append(ContainerRequest(cname, _gpu_ask(requests, cname)))
        cpu += _cpu(requests, cname)
        mem += _mem(requests, cname)
    init_cpu = init_mem = side_cpu = side_mem = 0
    for c in spec.get("initContainers") or []:
        cname = c.get("name", "")
        requests = _effective(c, cname)
        if any(_is_tessera(r) for r in requests):
            raise RequestError(f"init container {cname!r}: Tessera GPU resources are served to app containers only")
        ccpu, cmem = _cpu(requests, cname), _mem(requests, cname)
        if c.get("restartPolicy") == "Always":
            side_cpu += ccpu
            side_mem += cmem
        else:
            init_cpu = max(init_cpu, side_cpu + ccpu)
            init_mem = max(init_mem, side_mem + cmem)
    cpu = max(cpu + side_cpu, init_cpu)
    mem = max(mem + side_mem, init_mem)
    overhead = spec.get("overhead") or {}
    cpu += _cpu(overhead, "overhead")
    mem += _mem(overhead, "overhead")
    annotations = meta.get("annotations") or {}
    return PodRequest(containers=tuple(containers), cpu_milli=cpu, memory_bytes=mem,
                      models=_model_constraint(spec), workload=_workload(meta, workload_label),
                      policy=str(annotations.get("tessera.io/policy", "")), name=name, uid=str(meta.get("uid", "")))


def container_ask(container: dict[str, Any]) -> GpuAsk | None:
    """What one app container (Kubernetes JSON) asks of a GPU, by the rules of :func:`pod_request`;
    raises RequestError on a malformed ask."""
    cname = container.get("name", "")
    return _gpu_ask(_effective(container, cname), cname)


def _is_tessera(resource: str) -> bool:
    return resource in (RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY) or \
        resource.startswith(RESOURCE_MIG_PREFIX)


def _effective(container: dict, cname: str) -> dict[str, Any]:
    """Requests, with limits standing in where a request is missing (as the API server defaults them)."""
    resources = container.get("resources") or {}
    requests = dict(resources.get("requests") or {})
    limits = resources.get("limits") or {}
    for res, value in limits.items():
        if res not in requests:
            requests[res] = value
        elif _is_tessera(res) and _quantity(requests[res], res, cname) != _quantity(value, res, cname):
            raise RequestError(f"container {cname!r}: {res} request {requests[res]} and limit {value} differ; "
                               "GPU resources cannot be overcommitted, so set them equal")
    return requests


def _quantity(value: Any, res: str, cname: str, parse: Callable[[Any], Any] = parse_quantity):
    """``parse(value)``; RequestError naming the container and the resource."""
    try:
        return parse(value)
    except QuantityError as exc:
        raise RequestError(f"container {cname!r}: {res}: {exc}") from None


def _count(requests: dict, res: str, cname: str) -> int | None:
    if res not in requests:
        return None
    q = _quantity(requests[res], res, cname)
    if q.denominator != 1:
        raise RequestError(f"container {cname!r}: {res} must be a whole number, got {requests[res]}")
    if q < 0:
        raise RequestError(f"container {cname!r}: {res} cannot be negative, got {requests[res]}")
    return int(q)


def _cpu(requests: dict, cname: str) -> int:
    return _quantity(requests["cpu"], "cpu", cname, cpu_millis) if "cpu" in requests else 0


def _mem(requests: dict, cname: str) -> int:
    return _quantity(requests["memory"], "memory", cname, memory_bytes) if "memory" in requests else 0


def _gpu_ask(requests: dict, cname: str) -> GpuAsk | None:
    where = f"container {cname!r}"
    asks: list[tuple[str, GpuAsk]] = []
    gpu = _count(requests, RESOURCE_GPU, cname)
    if gpu:
        asks.append((RESOURCE_GPU, GpuAsk(KIND_GPU, count=gpu)))
    for res in requests:
        if res.startswith(RESOURCE_MIG_PREFIX):
            n = _count(requests, res, cname)
            if n:
                asks.append((res, GpuAsk(KIND_MIG, count=n, profile=res[len(RESOURCE_MIG_PREFIX):])))
    shared = _count(requests, RESOURCE_GPU_SHARED, cname)
    if shared:
        asks.append((RESOURCE_GPU_SHARED, GpuAsk(KIND_TIMESLICE, count=shared)))
    core = _count(requests, RESOURCE_MPS_CORE, cname)
    mem = _count(requests, RESOURCE_MPS_MEMORY, cname)
    if mem is not None and core is None:
        raise RequestError(f"{where}: {RESOURCE_MPS_MEMORY} needs {RESOURCE_MPS_CORE} on the same GPU; "
                           f"add {RESOURCE_MPS_CORE} (1 to 100)")
    if core is not None:
        if core == 0:
            raise RequestError(f"{where}: {RESOURCE_MPS_CORE}: 0 asks for no GPU; use 1 to 100 for a share "
                               "of one GPU, or whole GPUs in hundreds (200, 300, ...)")
        if core > 100 and core % 100:
            raise RequestError(f"{where}: {RESOURCE_MPS_CORE}: {core} is over 100 but not in whole hundreds; "
                               "use 1 to 100 for a share of one GPU, or 200, 300, ... for whole GPUs")
        if core > 100:
            # Whole GPUs with all their memory; mps-memory, where given (the webhook completes it so the
            # kubelet's counts stay true), counts that memory and may not exceed it (checked per node).
            asks.append((RESOURCE_MPS_CORE, GpuAsk(KIND_MPS_WHOLE, count=core // 100, memory_gib=mem)))
        else:
            if mem == 0:
                raise RequestError(f"{where}: {RESOURCE_MPS_MEMORY}: 0; a share needs at least 1 GiB")
            asks.append((RESOURCE_MPS_CORE, GpuAsk(KIND_MPS, core=core, memory_gib=mem)))
    if len(asks) > 1:
        names = ", ".join(r for r, _ in asks)
        raise RequestError(f"{where}: asks for {names}; one container uses one kind of GPU resource "
                           "(split it into containers, or choose one)")
    return asks[0][1] if asks else None


def _model_constraint(spec: dict) -> ModelConstraint | None:
    selected = (spec.get("nodeSelector") or {}).get(LABEL_GPU_PRODUCT)
    affinity = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms: list[tuple[frozenset[str] | None, frozenset[str]]] = []
    for term in affinity.get("nodeSelectorTerms") or []:
        allowed: frozenset[str] | None = None
        refused: set[str] = set()
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") != LABEL_GPU_PRODUCT:
                continue
            op, values = expr.get("operator"), frozenset(expr.get("values") or ())
            if op == "In":
                allowed = values if allowed is None else allowed & values
            elif op == "NotIn":
                refused |= values
            elif op == "DoesNotExist":
                allowed = frozenset()
            elif op != "Exists":
                raise RequestError(f"node affinity: operator {op!r} does not apply to {LABEL_GPU_PRODUCT}")
        terms.append((allowed, frozenset(refused)))
    if not terms:
        terms = [(None, frozenset())]
    if selected is not None:
        sel = frozenset({str(selected)})
        terms = [(sel if a is None else a & sel, r) for a, r in terms]
    if all(a is None and not r for a, r in terms):
        return None
    return ModelConstraint(tuple(terms))


def _workload(meta: dict, workload_label: str) -> str:
    ns = meta.get("namespace", "default")
    if workload_label:
        value = (meta.get("labels") or {}).get(workload_label)
        if value:
            return f"{ns}/{value}"
    owners = meta.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if owner:
        return f"{ns}/{owner.get('kind', '')}/{owner.get('uid') or owner.get('name', '')}"
    return ""
