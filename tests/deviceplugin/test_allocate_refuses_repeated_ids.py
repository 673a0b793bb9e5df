"""Allocate counts distinct device IDs: one ID sent many times is refused, never granted as many.

A real kubelet never repeats an ID in one container's request; a caller on the plugin's socket
that does (one mps-core ID 100 times) must not get a signed 100 % grant for one core's worth.
Over the plugin's real gRPC socket, with the plugin in its own process.
"""

from __future__ import annotations

import grpc
import pytest

from dpharness import plugin_on_kubelet, wait_until
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


@pytest.fixture(scope="module")
def mps_plugin():
    with plugin_on_kubelet("a100-80gb-mps.yaml", **{"default-mode": "mps"}) as (node, manager, _):
        wait_until(lambda: manager.allocatable().get(CORE) == 800 and manager.allocatable().get(MEM) == 640,
                   what="mps-core 800 and mps-memory 640 registered")
        yield node, manager


def allocate(node, resource: str, ids: list[str]) -> api.AllocateResponse:
    socket = node.plugin_dir / f"tessera-{resource.split('/')[1]}.sock"
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        request = api.AllocateRequest(container_requests=[api.ContainerAllocateRequest(devices_ids=ids)])
        return deviceplugin_grpc.DevicePluginStub(channel).Allocate(request, timeout=30)


@pytest.mark.parametrize("resource", [CORE, MEM])
def test_one_id_repeated_is_refused_not_counted(mps_plugin, resource):
    node, manager = mps_plugin
    one = sorted(manager.devices(resource))[0]
    with pytest.raises(grpc.RpcError) as info:
        allocate(node, resource, [one] * 100)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"device ID {one} is repeated (100 times)" in info.value.details()


def test_distinct_ids_are_still_granted_by_their_count(mps_plugin):
    node, manager = mps_plugin
    gpu = sorted(manager.devices(CORE))[0].split("::")[0]
    cores = sorted(i for i in manager.devices(CORE) if i.startswith(gpu + "::"))
    response = allocate(node, CORE, cores[:30])
    (container,) = response.container_responses
    assert dict(container.envs)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "30"
