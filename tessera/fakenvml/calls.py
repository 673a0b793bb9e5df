"""The common ground of the fake NVML functions: NVML errors, the init check, device lookup."""

from __future__ import annotations

import functools

import pynvml
from pynvml import NVMLError

from tessera.fakenvml.handles import decode_device, device_handle
from tessera.fakenvml.state import FakeNode, GpuState

MIB = 1024 * 1024


def nvml_error(name: str) -> NVMLError:
    """The pynvml exception for NVML_ERROR_<name> (a real NVMLError subclass)."""
    return NVMLError(getattr(pynvml, f"NVML_ERROR_{name}"))


def nvml_call(method):
    """Checks NVML is initialized and picks up injected faults before the call."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if self.init_count <= 0:
            raise nvml_error("UNINITIALIZED")
        self.node.refresh()
        with self.node.lock:
            return method(self, *args, **kwargs)
    call.fake_nvml = True
    return call


def pci_info(bus_id: str, device_id: int = 0) -> pynvml.nvmlPciInfo_t:
    """The PCI info struct NVML fills in for a bus id."""
    info = pynvml.nvmlPciInfo_t()
    domain, bus, rest = bus_id.split(":")
    info.busId = bus_id.encode()
    info.busIdLegacy = f"{domain[-4:]}:{bus}:{rest}".encode()
    info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
    info.pciDeviceId, info.pciSubSystemId = device_id, (device_id & 0xFFFF0000) | 0x10DE
    return info


def process_object(proc, gi: int, ci: int):
    """A process as pynvml returns it (its friendly object made from the v3 struct)."""
    raw = pynvml.c_nvmlProcessInfo_v3_t(pid=proc.pid, usedGpuMemory=proc.used_mib * MIB,
                                        gpuInstanceId=gi, computeInstanceId=ci)
    return pynvml.nvmlStructToFriendlyObject(raw)


class FakeCalls:
    """State shared by the groups of fake functions: the node, and how often NVML was initialized."""

    def __init__(self, node: FakeNode) -> None:
        self.node = node
        self.init_count = 0
        self._next_event_set = 1
        self.gpm_samples: dict[int, object] = {}  # GPM sample number -> what it recorded (None: not yet)
        self._next_gpm_sample = 1

    def _gpu(self, handle, mig_ok: bool = True) -> tuple[GpuState, int | None]:
        decoded = decode_device(handle)
        if decoded is None or decoded[0] >= len(self.node.gpus):
            raise nvml_error("INVALID_ARGUMENT")
        gpu, mig = self.node.gpus[decoded[0]], decoded[1]
        if gpu.error_code is not None:
            raise NVMLError(gpu.error_code)
        if mig is not None and (mig >= len(gpu.mig) or not mig_ok):
            raise nvml_error("INVALID_ARGUMENT" if mig >= len(gpu.mig) else "NOT_SUPPORTED")
        return gpu, mig

    def _whole(self, handle) -> GpuState:
        return self._gpu(handle, mig_ok=False)[0]

    @nvml_call
    def nvmlDeviceGetCount(self) -> int:
        return len(self.node.gpus)

    @nvml_call
    def nvmlDeviceGetHandleByIndex(self, index: int):
        if not 0 <= index < len(self.node.gpus):
            raise nvml_error("INVALID_ARGUMENT")
        return self._handle_of(index)

    def _handle_of(self, index: int, mig: int | None = None):
        gpu = self.node.gpus[index]
        if gpu.error_code is not None:
            raise NVMLError(gpu.error_code)
        return device_handle(index, mig)

    @nvml_call
    def nvmlDeviceGetHandleByUUID(self, uuid):
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.node.gpus:
            if gpu.spec.uuid == uuid:
                return self._handle_of(gpu.spec.index)
            for j, m in enumerate(gpu.mig):
                if m.uuid == uuid:
                    return self._handle_of(gpu.spec.index, j)
        raise nvml_error("NOT_FOUND")

    @nvml_call
    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        bus_id = (bus_id.decode() if isinstance(bus_id, bytes) else bus_id).upper()
        for gpu in self.node.gpus:
            if gpu.spec.pci_bus_id == bus_id or gpu.spec.pci_bus_id.endswith(bus_id):
                return self._handle_of(gpu.spec.index)
        raise nvml_error("NOT_FOUND")

