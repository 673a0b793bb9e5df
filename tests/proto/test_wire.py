"""The bytes Tessera puts on the wire are the kubelet's: field numbers and types as upstream.

Each expected encoding is written out by hand: a tag byte is ``field_number << 3 | wire_type``
(wire type 0 = varint, 2 = length-delimited), followed by a varint value or a length and the bytes.
A field given the wrong number or type in ``proto/`` changes a tag byte and fails here.
"""

from __future__ import annotations

import pytest

from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as dp
from tessera.kubeletapi import podresources_grpc, podresources_pb2 as pr


def s(tag: int, text: str) -> bytes:
    """A short length-delimited string field: tag, one-byte length, the bytes."""
    raw = text.encode()
    assert len(raw) < 128
    return bytes([tag, len(raw)]) + raw


# --- device plugin v1beta1 ------------------------------------------------------------------


def test_register_request_fields_1_to_4():
    msg = dp.RegisterRequest(
        version="v1beta1",
        endpoint="tessera.sock",
        resource_name="nvidia.com/gpu",
        options=dp.DevicePluginOptions(get_preferred_allocation_available=True),
    )
    expected = (
        b"\x0a\x07v1beta1"  # 1: version
        + b"\x12\x0ctessera.sock"  # 2: endpoint
        + b"\x1a\x0envidia.com/gpu"  # 3: resource_name
        + b"\x22\x02\x10\x01"  # 4: options { 2: get_preferred_allocation_available = true }
    )
    assert msg.SerializeToString() == expected


def test_device_plugin_options_both_flags():
    msg = dp.DevicePluginOptions(pre_start_required=True, get_preferred_allocation_available=True)
    assert msg.SerializeToString() == b"\x08\x01\x10\x01"


def test_list_and_watch_response_device_with_numa_topology():
    device = dp.Device(
        ID="GPU-0", health="Healthy", topology=dp.TopologyInfo(nodes=[dp.NUMANode(ID=1)])
    )
    device_bytes = (
        b"\x0a\x05GPU-0"  # 1: ID
        + b"\x12\x07Healthy"  # 2: health
        + b"\x1a\x04\x0a\x02\x08\x01"  # 3: topology { 1: nodes { 1: ID = 1 } }
    )
    assert device.SerializeToString() == device_bytes
    response = dp.ListAndWatchResponse(devices=[device])
    assert response.SerializeToString() == b"\x0a" + bytes([len(device_bytes)]) + device_bytes


def test_numa_node_id_is_a_plain_int64_varint():
    # int64, not sint64: -1 takes ten bytes of two's complement, as Go's gogo/protobuf writes it.
    assert dp.NUMANode(ID=-1).SerializeToString() == b"\x08" + b"\xff" * 9 + b"\x01"


def test_preferred_allocation_request_fields():
    msg = dp.PreferredAllocationRequest(
        container_requests=[
            dp.ContainerPreferredAllocationRequest(
                available_deviceIDs=["a", "b"], must_include_deviceIDs=["b"], allocation_size=2
            )
        ]
    )
    inner = (
        b"\x0a\x01a\x0a\x01b"  # 1: available_deviceIDs (repeated string)
        + b"\x12\x01b"  # 2: must_include_deviceIDs
        + b"\x18\x02"  # 3: allocation_size (int32 varint)
    )
    assert msg.SerializeToString() == b"\x0a\x0b" + inner


def test_preferred_allocation_response_device_ids():
    msg = dp.PreferredAllocationResponse(
        container_responses=[dp.ContainerPreferredAllocationResponse(deviceIDs=["b", "a"])]
    )
    assert msg.SerializeToString() == b"\x0a\x06\x0a\x01b\x0a\x01a"


def test_allocate_and_prestart_requests_use_devices_ids_field_1():
    allocate = dp.AllocateRequest(container_requests=[dp.ContainerAllocateRequest(devices_ids=["GPU-0"])])
    assert allocate.SerializeToString() == b"\x0a\x07\x0a\x05GPU-0"
    prestart = dp.PreStartContainerRequest(devices_ids=["x", "y"])
    assert prestart.SerializeToString() == b"\x0a\x01x\x0a\x01y"


def test_container_allocate_response_fields_1_to_5():
    msg = dp.ContainerAllocateResponse(
        envs={"A": "1"},
        mounts=[dp.Mount(container_path="/c", host_path="/h", read_only=True)],
        devices=[dp.DeviceSpec(container_path="/dev/nvidia0", host_path="/dev/nvidia0", permissions="rw")],
        annotations={"k": "v"},
        cdi_devices=[dp.CDIDevice(name="nvidia.com/gpu=0")],
    )
    expected = (
        b"\x0a\x06" + s(0x0A, "A") + s(0x12, "1")  # 1: envs entry { 1: key, 2: value }
        + b"\x12\x0a" + s(0x0A, "/c") + s(0x12, "/h") + b"\x18\x01"  # 2: mounts
        + b"\x1a\x20" + s(0x0A, "/dev/nvidia0") + s(0x12, "/dev/nvidia0") + s(0x1A, "rw")  # 3: devices
        + b"\x22\x06" + s(0x0A, "k") + s(0x12, "v")  # 4: annotations entry
        + b"\x2a\x12" + s(0x0A, "nvidia.com/gpu=0")  # 5: cdi_devices { 1: name }
    )
    assert msg.SerializeToString() == expected


def test_allocate_response_decodes_what_a_go_plugin_sends():
    wire = b"\x0a\x0d" + b"\x0a\x0b" + s(0x0A, "NV") + s(0x12, "GPU-0")
    response = dp.AllocateResponse.FromString(wire)
    assert dict(response.container_responses[0].envs) == {"NV": "GPU-0"}


# --- pod resources v1 -----------------------------------------------------------------------

CONTAINER_DEVICES_BYTES = (
    s(0x0A, "nvidia.com/gpu")  # 1: resource_name
    + s(0x12, "GPU-0") + s(0x12, "GPU-1")  # 2: device_ids
    + b"\x1a\x04\x0a\x02\x08\x01"  # 3: topology { nodes { ID: 1 } }
)


def container_devices() -> pr.ContainerDevices:
    return pr.ContainerDevices(
        resource_name="nvidia.com/gpu",
        device_ids=["GPU-0", "GPU-1"],
        topology=pr.TopologyInfo(nodes=[pr.NUMANode(ID=1)]),
    )


def test_container_devices_fields_1_to_3():
    assert container_devices().SerializeToString() == CONTAINER_DEVICES_BYTES


def test_list_pod_resources_response_nesting():
    container = pr.ContainerResources(name="main", devices=[container_devices()], cpu_ids=[2, 3])
    container_bytes = (
        s(0x0A, "main")  # 1: name
        + b"\x12" + bytes([len(CONTAINER_DEVICES_BYTES)]) + CONTAINER_DEVICES_BYTES  # 2: devices
        + b"\x1a\x02\x02\x03"  # 3: cpu_ids, packed int64
    )
    assert container.SerializeToString() == container_bytes
    pod = pr.PodResources(name="p", namespace="ns", containers=[container])
    pod_bytes = s(0x0A, "p") + s(0x12, "ns") + b"\x1a" + bytes([len(container_bytes)]) + container_bytes
    assert pod.SerializeToString() == pod_bytes
    response = pr.ListPodResourcesResponse(pod_resources=[pod])
    assert response.SerializeToString() == b"\x0a" + bytes([len(pod_bytes)]) + pod_bytes


def test_container_resources_dynamic_resources_field_5():
    container = pr.ContainerResources(
        dynamic_resources=[
            pr.DynamicResource(
                claim_name="c",
                claim_namespace="ns",
                claim_resources=[
                    pr.ClaimResource(
                        cdi_devices=[pr.CDIDevice(name="x")], driver_name="d", pool_name="p", device_name="g"
                    )
                ],
            )
        ]
    )
    claim_resource = b"\x0a\x03" + s(0x0A, "x") + s(0x12, "d") + s(0x1A, "p") + s(0x22, "g")
    dynamic = s(0x12, "c") + s(0x1A, "ns") + b"\x22" + bytes([len(claim_resource)]) + claim_resource
    assert container.SerializeToString() == b"\x2a" + bytes([len(dynamic)]) + dynamic


def test_allocatable_resources_response_fields_1_to_3():
    msg = pr.AllocatableResourcesResponse(
        devices=[container_devices()],
        cpu_ids=[1],
        memory=[pr.ContainerMemory(memory_type="memory", size=1024)],
    )
    expected = (
        b"\x0a" + bytes([len(CONTAINER_DEVICES_BYTES)]) + CONTAINER_DEVICES_BYTES
        + b"\x12\x01\x01"  # 2: cpu_ids packed
        + b"\x1a\x0b" + s(0x0A, "memory") + b"\x10\x80\x08"  # 3: memory { type, size=1024 varint }
    )
    assert msg.SerializeToString() == expected


def test_get_pod_resources_request_fields():
    msg = pr.GetPodResourcesRequest(pod_name="p", pod_namespace="ns")
    assert msg.SerializeToString() == b"\x0a\x01p\x12\x02ns"
    wrapped = pr.GetPodResourcesResponse(pod_resources=pr.PodResources(name="p"))
    assert wrapped.SerializeToString() == b"\x0a\x03\x0a\x01p"


# --- gRPC method paths ----------------------------------------------------------------------


class RecordingChannel:
    """Stands in for a grpc.Channel and records the method path of every callable a stub makes."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def _record(self, path, *args, **kwargs):
        self.paths.append(path)
        return lambda *a, **k: None

    unary_unary = unary_stream = stream_unary = stream_stream = _record


@pytest.mark.parametrize(
    ("stub", "paths"),
    [
        (deviceplugin_grpc.RegistrationStub, ["/v1beta1.Registration/Register"]),
        (
            deviceplugin_grpc.DevicePluginStub,
            [
                "/v1beta1.DevicePlugin/GetDevicePluginOptions",
                "/v1beta1.DevicePlugin/ListAndWatch",
                "/v1beta1.DevicePlugin/GetPreferredAllocation",
                "/v1beta1.DevicePlugin/Allocate",
                "/v1beta1.DevicePlugin/PreStartContainer",
            ],
        ),
        (
            podresources_grpc.PodResourcesListerStub,
            [
                "/v1.PodResourcesLister/List",
                "/v1.PodResourcesLister/GetAllocatableResources",
                "/v1.PodResourcesLister/Get",
            ],
        ),
    ],
)
def test_stubs_call_the_kubelets_method_paths(stub, paths):
    channel = RecordingChannel()
    stub(channel)
    assert sorted(channel.paths) == sorted(paths)


def test_list_and_watch_is_the_only_streaming_method():
    service = dp.DESCRIPTOR.services_by_name["DevicePlugin"]
    streaming = [m.name for m in service.methods if m.server_streaming or m.client_streaming]
    assert streaming == ["ListAndWatch"]
