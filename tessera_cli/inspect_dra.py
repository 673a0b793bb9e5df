"""``tessera inspect``'s DRA side: the GPUs Tessera's DRA driver publishes (ResourceSlices of driver
``gpu.tessera.io``) and who holds them (ResourceClaims kube-scheduler allocated from them), as the same
``GpuView``s and ``Holder``s the device-plugin GPUs are shown with, marked ``via`` "dra".

Pure: plain dicts in (as the API server's JSON gives them), views out; :mod:`tessera_cli.inspect` does
the reading. Every object is read as hostile input: a field missing or of the wrong type, a quantity
that does not parse, a device no slice publishes is left out with a note, never an exception.

    gpus = dra_gpus(slices, claims)          # DraGpus: GpuViews by node, notes by node ("" for none)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from tessera.dradevices import DRIVER_NAME, MODE_EXCLUSIVE, MODE_MIG, MODE_MPS, MODE_TIMESLICE
from tessera.podrequest import KIND_GPU, KIND_MPS, KIND_TIMESLICE
from tessera.quantity import QuantityError, parse_quantity
from tessera_cli.clusterview import STATE_ALLOCATED, VIA_DRA, GpuFree, GpuView, Holder

GIB = 2**30
TEXT_LIMIT = 128          # characters of any name or attribute shown; longer text is cut
BLOCKING_TAINTS = ("NoSchedule", "NoExecute")


@dataclass
class DraGpus:
    """The driver's GPUs by node name, and notes by node name ("" for those tied to no node)."""

    by_node: dict[str, list[GpuView]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    claims: int = 0       # allocation results of this driver that matched a published device

    def note(self, node: str, text: str) -> None:
        self.notes.setdefault(node, []).append(text)


@dataclass
class _Device:
    """One published device while its claims are gathered."""

    node: str
    name: str
    spec: dict
    holders: list[Holder] = field(default_factory=list)
    used_cores: Fraction = Fraction(0)
    used_bytes: Fraction = Fraction(0)
    unknown_use: bool = False     # an MPS result that records no usable consumedCapacity


# -- hostile-input readers ----------------------------------------------------------------------------

def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _items(value: object) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return value if len(value) <= TEXT_LIMIT else value[:TEXT_LIMIT] + "..."


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31 else None


def _attribute(device: dict, name: str, kind: str, driver: str) -> object:
    """An attribute's value of ``kind`` (string, int, bool), by its short or its driver-qualified name."""
    attrs = _dict(device.get("attributes"))
    return _dict(attrs.get(name) or attrs.get(f"{driver}/{name}")).get(kind)


def _quantity(value: object) -> Fraction | None:
    """A non-negative quantity, or None when it is not one."""
    try:
        amount = parse_quantity(value)
    except (QuantityError, TypeError, ValueError):
        return None
    return amount if amount >= 0 else None


def _capacity(device: dict, name: str, driver: str) -> Fraction | None:
    caps = _dict(device.get("capacity"))
    return _quantity(_dict(caps.get(name) or caps.get(f"{driver}/{name}")).get("value"))


def _number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else round(float(value), 2)


# -- slices -------------------------------------------------------------------------------------------

def _pool(s: dict) -> tuple[str, int]:
    pool = _dict(_dict(s.get("spec")).get("pool"))
    return _text(pool.get("name")), _int(pool.get("generation")) or 0


def _newest(slices: list[dict], driver: str) -> list[dict]:
    """The driver's slices of each pool's newest generation (the one kube-scheduler allocates from)."""
    mine = [s for s in slices if _dict(s.get("spec")).get("driver") == driver]
    newest: dict[str, int] = {}
    for name, generation in map(_pool, mine):
        newest[name] = max(newest.get(name, 0), generation)
    return [s for s in mine if _pool(s)[1] == newest[_pool(s)[0]]]


def _devices(slices: list[dict], driver: str, out: DraGpus) -> dict[tuple[str, str], _Device]:
    """The published devices by (pool, device name)."""
    found: dict[tuple[str, str], _Device] = {}
    for s in _newest(slices, driver):
        spec = _dict(s.get("spec"))
        name = _text(_dict(s.get("metadata")).get("name")) or "(unnamed)"
        node, pool = _text(spec.get("nodeName")), _pool(s)[0]
        if not node:
            out.note("", f"ResourceSlice {name}: no spec.nodeName, its devices are not shown")
            continue
        for device in _items(spec.get("devices")):
            key = (pool, _text(device.get("name")))
            if not key[1]:
                out.note(node, f"ResourceSlice {name}: a device without a name is not shown")
            elif key in found:
                out.note(node, f"ResourceSlice {name}: device {key[1]} of pool {pool} is published twice")
            else:
                found[key] = _Device(node, key[1], device)
    return found


# -- claims -------------------------------------------------------------------------------------------

def _is_shared(d: _Device, driver: str) -> bool:
    mode = _attribute(d.spec, "mode", "string", driver)
    return mode in (MODE_MPS, MODE_TIMESLICE) or (mode is None and d.spec.get("allowMultipleAllocations") is True)


def _reserved_pods(claim: dict) -> tuple[str, ...]:
    entries = _items(_dict(claim.get("status")).get("reservedFor"))
    return tuple(n for n in (_text(e.get("name")) for e in entries
                             if e.get("resource") == "pods" and not e.get("apiGroup")) if n)


def _hold(d: _Device, result: dict, claim_ns: str, claim: str, pods: tuple[str, ...], driver: str,
          out: DraGpus) -> None:
    """Add one allocation result to its device: a holder, and on an MPS GPU what it consumed."""
    base = dict(namespace=claim_ns, pod=pods[0] if pods else "", container="", state=STATE_ALLOCATED,
                via=VIA_DRA, claim=claim, request=_text(result.get("request")), pods=pods,
                share_id=_text(result.get("shareID")))
    if not _is_shared(d, driver):
        memory = _capacity(d.spec, "memory", driver)
        d.holders.append(Holder(kind=KIND_GPU, core_pct=100, memory_gib=int(memory / GIB) if memory else None,
                                **base))
        return
    if _capacity(d.spec, "replicas", driver):   # time-sliced: the claim holds one replica, the GPU whole
        d.holders.append(Holder(kind=KIND_TIMESLICE, core_pct=None, memory_gib=None, **base))
        return
    consumed = _dict(result.get("consumedCapacity"))
    cores, memory = _quantity(consumed.get("cores")), _quantity(consumed.get("memory"))
    if cores is None or memory is None:
        out.note(d.node, f"claim {claim_ns}/{claim}: MPS device {d.name} records no usable consumedCapacity "
                         "(counted as holding all of it)")
        d.unknown_use = True
    d.used_cores += cores or 0
    d.used_bytes += memory or 0
    d.holders.append(Holder(kind=KIND_MPS, core_pct=None if cores is None else _number(cores),
                            memory_gib=None if memory is None else _number(memory / GIB), **base))


def _claims(claims: list[dict], devices: dict[tuple[str, str], _Device], driver: str, out: DraGpus) -> None:
    for claim in claims:
        meta = _dict(claim.get("metadata"))
        ns, name = _text(meta.get("namespace")), _text(meta.get("name")) or "(unnamed)"
        results = _items(_dict(_dict(_dict(claim.get("status")).get("allocation")).get("devices")).get("results"))
        pods = _reserved_pods(claim)
        for result in results:
            if result.get("driver") != driver:
                continue
            pool, device = _text(result.get("pool")), _text(result.get("device"))
            d = devices.get((pool, device))
            if d is None:
                out.note(pool, f"claim {ns}/{name}: allocated device {device or '(none)'} of pool "
                               f"{pool or '(none)'}, which no ResourceSlice of {driver} publishes")
                continue
            _hold(d, result, ns, name, pods, driver, out)
            out.claims += 1


# -- views --------------------------------------------------------------------------------------------

def _index(d: _Device, driver: str) -> int:
    index = _int(_attribute(d.spec, "index", "int", driver))
    if index is None and d.name.startswith("gpu-") and d.name[4:].isdigit() and len(d.name) < 12:
        index = int(d.name[4:])
    return -1 if index is None else index


def _closed(d: _Device) -> str:
    """Why kube-scheduler will not allocate the device (a blocking taint), '' when it will."""
    for taint in _items(d.spec.get("taints")):
        if taint.get("effect") in BLOCKING_TAINTS:
            value = _text(taint.get("value"))
            return f"tainted {_text(taint.get('key'))}{'=' + value if value else ''}:{taint['effect']}"
    return ""


def _free(d: _Device, shared: bool, driver: str) -> tuple[int, GpuFree]:
    """(the card's GiB, what is free): capacity minus the sum of what the claims consumed."""
    memory = _capacity(d.spec, "memory", driver)
    if memory is None:   # a time-sliced GPU's memory is an attribute: its only capacity is replicas
        memory = Fraction(_int(_attribute(d.spec, "memoryMiB", "int", driver)) or 0) * 2**20
    gib = int(memory / GIB)
    if not shared:
        return gib, GpuFree(0.0 if d.holders else 100.0, whole=not d.holders)
    replicas = _capacity(d.spec, "replicas", driver)
    if replicas:   # time-sliced: each claim holds one replica of the whole GPU
        total = int(replicas)
        left = max(total - len(d.holders), 0)
        return gib, GpuFree(round(100 * left / total, 2), whole=not d.holders, replicas=left, replicas_total=total)
    cores = _capacity(d.spec, "cores", driver) or Fraction(0)
    if d.unknown_use:
        core_free, mem_free = Fraction(0), Fraction(0)
    else:
        core_free, mem_free = max(cores - d.used_cores, Fraction(0)), max(memory - d.used_bytes, Fraction(0))
    share = float(round(100 * core_free / cores, 2)) if cores else 0.0
    return gib, GpuFree(share, whole=not d.holders, core_pct=_number(core_free), memory_gib=_number(mem_free / GIB))


def _view(d: _Device, driver: str) -> GpuView:
    shared = _is_shared(d, driver)
    mode = _text(_attribute(d.spec, "mode", "string", driver)) or (MODE_MPS if shared else MODE_EXCLUSIVE)
    gib, free = _free(d, shared, driver)
    reason = _closed(d)
    if mode == MODE_MIG:   # a MIG device made for its claim on the GPU named by parentUUID
        mode = f"mig {_text(_attribute(d.spec, 'profile', 'string', driver))}"
    uuid = _attribute(d.spec, "uuid", "string", driver) or _attribute(d.spec, "parentUUID", "string", driver)
    return GpuView(index=_index(d, driver), uuid=_text(uuid),
                   model=_text(_attribute(d.spec, "productName", "string", driver)), memory_gib=gib, mode=mode,
                   healthy=True, reason=reason, schedulable=not reason, pending_mode=None, mig_instances={},
                   holders=tuple(d.holders), free=free, via=VIA_DRA, device=d.name)


def dra_gpus(slices: object, claims: object, driver: str = DRIVER_NAME) -> DraGpus:
    """The GPUs ``driver``'s ResourceSlices publish, by node, each with the ResourceClaims allocated to it
    as holders and its free capacity (capacity minus the sum of ``consumedCapacity``). ``slices`` and
    ``claims`` are the lists' ``items``; anything unreadable in them becomes a note."""
    out = DraGpus()
    devices = _devices(_items(slices), driver, out)
    _claims(_items(claims), devices, driver, out)
    for d in devices.values():
        mode = _attribute(d.spec, "mode", "string", driver)
        if mode == MODE_MIG and not d.holders:
            continue   # a MIG placement nobody holds: one of many the driver offers, not a GPU
        if not _is_shared(d, driver) and len(d.holders) > 1:
            out.note(d.node, f"exclusive DRA device {d.name} is allocated to {len(d.holders)} claims")
        out.by_node.setdefault(d.node, []).append(_view(d, driver))
    for gpus in out.by_node.values():
        gpus.sort(key=lambda g: (g.index, g.device))
    return out
