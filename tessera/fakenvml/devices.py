"""Fake NVML functions that describe devices: identity, PCI, NUMA, NVLink, PCIe topology and MIG layout."""

from __future__ import annotations

import ctypes

import pynvml
from pynvml import NVMLError

from tessera.fakenvml.calls import FakeCalls, nvml_error, nvml_call, pci_info
from tessera.fakenvml.handles import decode_gpu_instance, device_handle, gpu_instance_handle
from tessera.fakenvml.state import GpuState
from tessera.fakenvml.topology import pcie_level, switch_bus_id


class DeviceFunctions(FakeCalls):
    """What a device is and how it is wired and partitioned."""

    # ---- identity -----------------------------------------------------------------------------
    @nvml_call
    def nvmlDeviceGetIndex(self, handle) -> int:
        return self._whole(handle).spec.index

    @nvml_call
    def nvmlDeviceGetMinorNumber(self, handle) -> int:
        return self._whole(handle).spec.minor  # the driver's probe order, not the index (see description)

    @nvml_call
    def nvmlDeviceGetUUID(self, handle) -> str:
        gpu, mig = self._gpu(handle)
        return gpu.spec.uuid if mig is None else gpu.mig[mig].uuid

    @nvml_call
    def nvmlDeviceGetName(self, handle) -> str:
        gpu, mig = self._gpu(handle)
        name = gpu.spec.model.nvml_name
        return name if mig is None else f"{name} MIG {gpu.mig[mig].placed.profile.name}"

    @nvml_call
    def nvmlDeviceGetNumGpuCores(self, handle) -> int:
        return self._whole(handle).spec.model.cuda_cores

    @nvml_call
    def nvmlDeviceGetAttributes_v2(self, handle):
        gpu, mig = self._gpu(handle)
        if mig is None:  # "currently only supports MIG device handles"
            raise nvml_error("NOT_SUPPORTED")
        p = gpu.mig[mig].placed.profile
        return pynvml.c_nvmlDeviceAttributes(
            multiprocessorCount=p.sm_count, sharedCopyEngineCount=p.slices, sharedDecoderCount=p.slices,
            gpuInstanceSliceCount=p.slices, computeInstanceSliceCount=p.slices, memorySizeMB=p.memory_mib)

    nvmlDeviceGetAttributes = nvmlDeviceGetAttributes_v2

    @nvml_call
    def nvmlDeviceGetCudaComputeCapability(self, handle) -> tuple[int, int]:
        return self._gpu(handle)[0].spec.model.compute_capability

    @nvml_call
    def nvmlDeviceGetPciInfo_v3(self, handle):
        spec = self._whole(handle).spec
        return pci_info(spec.pci_bus_id, spec.model.pci_device_id)

    nvmlDeviceGetPciInfo = nvmlDeviceGetPciInfo_v3

    @nvml_call
    def nvmlDeviceGetNumaNodeId(self, handle) -> int:
        return self._whole(handle).spec.numa_node

    # ---- NVLink -------------------------------------------------------------------------------
    def _link(self, handle, link: int):
        gpu = self._whole(handle)
        if gpu.spec.model.nvlinks == 0:
            raise nvml_error("NOT_SUPPORTED")
        if not 0 <= link < gpu.spec.model.nvlinks:
            raise nvml_error("INVALID_ARGUMENT")
        ends = self.node.description.links[gpu.spec.index]
        return ends[link] if link < len(ends) else None

    @nvml_call
    def nvmlDeviceGetNvLinkState(self, handle, link: int) -> int:
        return pynvml.NVML_FEATURE_ENABLED if self._link(handle, link) else pynvml.NVML_FEATURE_DISABLED

    @nvml_call
    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle, link: int) -> int:
        end = self._link(handle, link)
        if end is None:
            raise nvml_error("NOT_SUPPORTED")
        return pynvml.NVML_NVLINK_DEVICE_TYPE_GPU if end.kind == "gpu" else pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH

    @nvml_call
    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle, link: int):
        end = self._link(handle, link)
        if end is None:
            raise nvml_error("NOT_SUPPORTED")
        if end.kind == "switch":
            return pci_info(switch_bus_id(end.index), 0x1AF110DE)
        spec = self.node.description.gpus[end.index]
        return pci_info(spec.pci_bus_id, spec.model.pci_device_id)

    @nvml_call
    def nvmlDeviceGetP2PStatus(self, handle1, handle2, p2p_index: int) -> int:
        a, b = self._whole(handle1).spec.index, self._whole(handle2).spec.index
        if p2p_index != pynvml.NVML_P2P_CAPS_INDEX_NVLINK:
            return pynvml.NVML_P2P_STATUS_OK
        links = self.node.description.links
        direct = any(e.kind == "gpu" and e.index == b for e in links[a])
        fabric = a != b and any(e.kind == "switch" for e in links[a]) and any(e.kind == "switch" for e in links[b])
        return pynvml.NVML_P2P_STATUS_OK if direct or fabric else pynvml.NVML_P2P_STATUS_NOT_SUPPORTED

    @nvml_call
    def nvmlDeviceGetTopologyCommonAncestor(self, handle1, handle2) -> int:
        a, b = self._whole(handle1).spec, self._whole(handle2).spec
        desc = self.node.description
        level = pcie_level(a.index, b.index, desc.switches, [g.numa_node for g in desc.gpus], a.model.nvlinks > 0)
        return getattr(pynvml, f"NVML_TOPOLOGY_{level}")

    # ---- MIG ----------------------------------------------------------------------------------
    def _mig_capable(self, handle) -> GpuState:
        gpu = self._whole(handle)
        if not gpu.spec.model.mig_capable:
            raise nvml_error("NOT_SUPPORTED")
        return gpu

    @nvml_call
    def nvmlDeviceGetMigMode(self, handle) -> list[int]:
        mode = int(self._mig_capable(handle).spec.mig_enabled)
        return [mode, mode]

    @nvml_call
    def nvmlDeviceGetMaxMigDeviceCount(self, handle) -> int:
        return self._mig_capable(handle).spec.model.mig_compute_slices

    @nvml_call
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index: int):
        gpu = self._mig_capable(handle)
        if not gpu.spec.mig_enabled:
            raise nvml_error("INVALID_ARGUMENT")
        if not 0 <= index < len(gpu.mig):
            raise nvml_error("NOT_FOUND")
        return device_handle(gpu.spec.index, index)

    @nvml_call
    def nvmlDeviceIsMigDeviceHandle(self, handle):
        return ctypes.c_uint(int(self._gpu(handle)[1] is not None))

    @nvml_call
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle):
        gpu, mig = self._gpu(handle)
        if mig is None:
            raise nvml_error("INVALID_ARGUMENT")
        return device_handle(gpu.spec.index)

    def _mig_device(self, handle):
        gpu, mig = self._gpu(handle)
        if mig is None:
            raise nvml_error("NOT_SUPPORTED" if not gpu.spec.mig_enabled else "INVALID_ARGUMENT")
        return gpu.mig[mig]

    @nvml_call
    def nvmlDeviceGetGpuInstanceId(self, handle) -> int:
        return self._mig_device(handle).gpu_instance_id

    @nvml_call
    def nvmlDeviceGetComputeInstanceId(self, handle) -> int:
        self._mig_device(handle)
        return 0  # one compute instance per GPU instance, spanning it

    @nvml_call
    def nvmlDeviceGetGpuInstanceById(self, handle, gpu_instance_id: int):
        gpu = self._mig_capable(handle)
        if gpu.gpu_instance(gpu_instance_id) is None:
            raise nvml_error("NOT_FOUND")
        return gpu_instance_handle(gpu.spec.index, gpu_instance_id)

    @nvml_call
    def nvmlGpuInstanceGetInfo(self, gi_handle):
        decoded = decode_gpu_instance(gi_handle)
        if decoded is None or decoded[0] >= len(self.node.gpus):
            raise nvml_error("INVALID_ARGUMENT")
        gpu = self.node.gpus[decoded[0]]
        if gpu.error_code is not None:
            raise NVMLError(gpu.error_code)
        p = gpu.gpu_instance(decoded[1])
        if p is None:
            raise nvml_error("INVALID_ARGUMENT")
        return pynvml.c_nvmlGpuInstanceInfo_t(
            device=device_handle(gpu.spec.index), id=p.gpu_instance_id, profileId=p.profile.profile_id,
            placement=pynvml.c_nvmlGpuInstancePlacement_t(start=p.start, size=p.size))

    @nvml_call
    def nvmlDeviceGetGpuInstanceProfileInfo(self, handle, profile: int, version: int = 2):
        gpu = self._mig_capable(handle)
        for p in gpu.spec.model.mig_profiles:
            if p.profile == profile:
                info = pynvml.c_nvmlGpuInstanceProfileInfo_v2_t() if version == 2 else pynvml.c_nvmlGpuInstanceProfileInfo_t()
                info.id, info.sliceCount, info.instanceCount = p.profile_id, p.slices, p.instances
                info.multiprocessorCount, info.copyEngineCount, info.memorySizeMB = p.sm_count, p.slices, p.memory_mib
                if version == 2:
                    info.name = f"MIG {p.name}".encode()
                return info
        raise nvml_error("NOT_SUPPORTED")

    nvmlDeviceGetGpuInstanceProfileInfoV = nvmlDeviceGetGpuInstanceProfileInfo

