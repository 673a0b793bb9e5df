"""The fake NVML functions: same names, arguments, return types and errors as pynvml's.

Each method of :class:`FakeFunctions` stands in for the pynvml function of the same name. They
return the ctypes structs and Python values pynvml returns, raise ``pynvml.NVMLError`` subclasses
with the real codes (``NVMLError_GpuIsLost``, ``NVMLError_NotSupported``, ...), and behave as the
real driver does where it matters to Tessera: utilization is not supported on a MIG-enabled GPU,
GPM answers from Hopper on, Ampere and later remap rows instead of retiring pages, only HBM
reports its temperature and only NVLink boards count NVLink traffic, a lost GPU fails every call.
"""

from __future__ import annotations

from pynvml import NVMLError

from tessera.fakenvml.activity import ActivityFunctions
from tessera.fakenvml.calls import nvml_error, nvml_call
from tessera.fakenvml.counters import CounterFunctions
from tessera.fakenvml.devices import DeviceFunctions
from tessera.fakenvml.miglifecycle import MigLifecycleFunctions
from tessera.fakenvml.telemetry import TelemetryFunctions


class FakeFunctions(DeviceFunctions, MigLifecycleFunctions, TelemetryFunctions, ActivityFunctions,
                    CounterFunctions):
    """The fake pynvml functions for one fake node."""

    # ---- library and system -------------------------------------------------------------------
    def nvmlInitWithFlags(self, flags: int) -> None:
        self.node.refresh()
        self.init_count += 1

    def nvmlInit(self) -> None:
        self.nvmlInitWithFlags(0)

    def nvmlShutdown(self) -> None:
        if self.init_count <= 0:
            raise nvml_error("UNINITIALIZED")
        self.init_count -= 1

    def nvmlErrorString(self, result: int) -> str:
        return NVMLError._errcode_to_string.get(result, f"NVML error {result}")

    @nvml_call
    def nvmlSystemGetDriverVersion(self) -> str:
        return self.node.description.driver_version

    @nvml_call
    def nvmlSystemGetNVMLVersion(self) -> str:
        return f"{self.node.description.cuda_version.split('.')[0]}.{self.node.description.driver_version}"

    @nvml_call
    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.node.description.cuda_version_int

    nvmlSystemGetCudaDriverVersion_v2 = nvmlSystemGetCudaDriverVersion


FUNCTION_NAMES: tuple[str, ...] = tuple(
    name for name in dir(FakeFunctions) if name.startswith("nvml") and callable(getattr(FakeFunctions, name))
)
