"""The Allocate response for one container: environment, mounts, devices, and the signed grant.

Built from the IDs alone (no API call on the kubelet's admission path). ``mps-core`` and
``mps-memory`` come as separate Allocate calls and the kubelet keeps the first value of each key,
so they never write the same keys: core's response carries the visible devices, the pipe
directory, the thread percentage, the mounts and the core grant; memory's carries only
``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` and the memory grant. Every variable is what
:func:`tessera.grant.grant_env` says, which the hook checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from deviceplugin.devicenodes import cdi_names, device_paths
from deviceplugin.rm import Request
from tessera import RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera.grant import encode, grant_env, new_grant
from tessera.hostdevices import host_device_path
from tessera.kubeletapi import deviceplugin_pb2 as api

MEMORY_ENV = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"
CONTAINER_SHM = "/dev/shm"


@dataclass(frozen=True)
class ResponseSettings:
    """What the response needs besides the IDs."""

    node: str
    grant_key: bytes
    device_list_strategy: str  # "device-nodes" or "cdi"
    mps_pipe_directory: str
    mps_shm_directory: str
    device_root: str = "/"  # where the device nodes are on the host: "/" on a real node


def container_response(request: Request, settings: ResponseSettings,
                       mig_index: dict[str, int]) -> api.ContainerAllocateResponse:
    """The ContainerAllocateResponse for one understood request."""
    paths = device_paths(request.devices)
    core = request.core if request.resource == RESOURCE_MPS_CORE else None
    pipe = settings.mps_pipe_directory if request.resource == RESOURCE_MPS_CORE else None
    grant = new_grant(request.resource, settings.node, list(request.ids), list(request.visible), paths,
                      core=core, mem_gib=request.mem_gib, pipe=pipe)
    env = grant_env(grant)
    if request.resource == RESOURCE_MPS_MEMORY:
        env = {MEMORY_ENV: env[MEMORY_ENV]}  # the visible devices come with mps-core's response
    response = api.ContainerAllocateResponse(envs=env, annotations=encode(grant, settings.grant_key))
    if request.resource == RESOURCE_MPS_CORE:
        # Read-write, as NVIDIA's k8s-device-plugin mounts it (internal/plugin/mps.go: no ReadOnly): the
        # MPS client's use of the directory beyond connecting to ``control`` is not documented, so a
        # read-only mount is not known to work with real clients. What a tenant can do there (unlink or
        # replace ``control``, forge the pid file) the supervisor recovers from (deviceplugin/mpsdaemon.py).
        response.mounts.add(container_path=settings.mps_pipe_directory, host_path=settings.mps_pipe_directory,
                            read_only=False)
        response.mounts.add(container_path=CONTAINER_SHM, host_path=settings.mps_shm_directory, read_only=False)
    if settings.device_list_strategy == "cdi":
        for name in cdi_names(request.devices, mig_index):
            response.cdi_devices.add(name=name)
    else:
        for path in paths:
            response.devices.add(container_path=path, host_path=host_device_path(settings.device_root, path),
                                 permissions="rw")
    return response
