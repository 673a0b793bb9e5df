"""The pod-resources API v1 of the simulated kubelet, read over its real unix socket."""

from __future__ import annotations

import os

import grpc
import pytest

from simcluster.kubelet import DeviceManager
from tessera.kubeletapi import podresources_grpc, podresources_pb2 as api

RESOURCE = "example.com/gpu"  # what fake_device_plugin.py serves (conftest.start_plugin)

IDLE_POD = {
    "metadata": {"name": "idle", "namespace": "ns1", "uid": "uid-idle"},
    "spec": {"containers": [{"name": "sleep"}]},
}
GPU_POD = {
    "metadata": {"name": "train", "namespace": "ns1", "uid": "uid-train"},
    "spec": {"containers": [{"name": "main"}, {"name": "log"}],
             "initContainers": [{"name": "setup"}, {"name": "sidecar", "restartPolicy": "Always"}]},
}


@pytest.fixture
def lister(node_dir, start_plugin, eventually):
    socket = os.path.join(node_dir, "pod-resources.sock")
    active = [GPU_POD, IDLE_POD]
    dm = DeviceManager(os.path.join(node_dir, "device-plugins"), os.path.join(node_dir, "checkpoint"),
                       pod_resources_socket=socket, active_pods=lambda: active)
    dm.start()
    start_plugin("GPU-0@0,GPU-1@1,GPU-2")
    eventually(lambda: dm.allocatable().get(RESOURCE) == 3, what="three devices")
    dm.allocate("uid-train", "train", "ns1", "main", RESOURCE, 2)
    channel = grpc.insecure_channel(f"unix://{socket}")
    yield podresources_grpc.PodResourcesListerStub(channel)
    channel.close()
    dm.stop()


def device_entries(devices) -> list[tuple[str, list[str], list[int]]]:
    return [(d.resource_name, list(d.device_ids), [n.ID for n in d.topology.nodes]) for d in devices]


def test_list_gives_every_pod_and_its_devices_per_numa_node(lister):
    pods = lister.List(api.ListPodResourcesRequest(), timeout=5).pod_resources
    assert [(p.name, p.namespace) for p in pods] == [("train", "ns1"), ("idle", "ns1")]
    train = pods[0]
    assert [c.name for c in train.containers] == ["main", "log", "sidecar"]
    assert device_entries(train.containers[0].devices) == [
        (RESOURCE, ["GPU-0"], [0]),
        (RESOURCE, ["GPU-1"], [1]),
    ]
    assert list(train.containers[1].devices) == []
    assert [c.name for c in pods[1].containers] == ["sleep"]


def test_get_allocatable_resources_lists_each_healthy_device(lister):
    devices = lister.GetAllocatableResources(api.AllocatableResourcesRequest(), timeout=5).devices
    assert device_entries(devices) == [
        (RESOURCE, ["GPU-0"], [0]),
        (RESOURCE, ["GPU-1"], [1]),
        (RESOURCE, ["GPU-2"], []),
    ]


def test_get_one_pod_and_not_found_for_an_unknown_one(lister):
    pod = lister.Get(api.GetPodResourcesRequest(pod_name="train", pod_namespace="ns1"), timeout=5).pod_resources
    assert pod.name == "train"
    assert sorted(d for c in pod.containers for dev in c.devices for d in dev.device_ids) == ["GPU-0", "GPU-1"]
    with pytest.raises(grpc.RpcError) as missing:
        lister.Get(api.GetPodResourcesRequest(pod_name="train", pod_namespace="other"), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == "pod train in namespace other not found"


def test_without_a_pod_source_list_shows_pods_that_hold_devices(node_dir, start_plugin, eventually):
    socket = os.path.join(node_dir, "pr.sock")
    with DeviceManager(os.path.join(node_dir, "device-plugins"), os.path.join(node_dir, "cp"),
                       pod_resources_socket=socket) as dm:
        start_plugin("GPU-0")
        eventually(lambda: dm.allocatable().get(RESOURCE) == 1, what="one device")
        dm.allocate("uid-x", "x", "team", "main", RESOURCE, 1)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            pods = podresources_grpc.PodResourcesListerStub(channel).List(api.ListPodResourcesRequest(), timeout=5)
    assert [(p.name, p.namespace, [c.name for c in p.containers]) for p in pods.pod_resources] == [
        ("x", "team", ["main"])
    ]
