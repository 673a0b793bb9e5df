"""The simulated kubelet's device manager against a device plugin in another process, over real sockets."""

from __future__ import annotations

import base64
import json
import os
import threading

import grpc
import pytest

from simcluster.kubelet import AdmissionError, DeviceManager
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api

RESOURCE = "example.com/gpu"  # what fake_device_plugin.py serves (conftest.start_plugin)


class Changes:
    """Records every on_resources_changed call."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, int], dict[str, int]]] = []
        self.lock = threading.Lock()

    def __call__(self, capacity: dict[str, int], allocatable: dict[str, int]) -> None:
        with self.lock:
            self.calls.append((capacity, allocatable))

    def saw(self, capacity: dict[str, int], allocatable: dict[str, int]) -> bool:
        with self.lock:
            return (capacity, allocatable) in self.calls


@pytest.fixture
def changes():
    return Changes()


@pytest.fixture
def manager(node_dir, changes):
    dm = DeviceManager(os.path.join(node_dir, "device-plugins"), os.path.join(node_dir, "checkpoint"),
                       changes, removal_grace_s=0.6, dial_timeout_s=2)
    dm.start()
    yield dm
    dm.stop()


def ready(manager, count=3):
    return lambda: manager.allocatable().get(RESOURCE) == count


def test_capacity_and_allocatable_follow_list_and_watch(manager, changes, start_plugin, node_dir, eventually):
    control = os.path.join(node_dir, "control.json")
    start_plugin("GPU-0@0,GPU-1@0,GPU-2@1", "--control", control)
    eventually(ready(manager), what="three healthy devices")
    assert manager.capacity() == {RESOURCE: 3}
    # Callbacks follow state changes from the stream thread: wait for them rather than race them.
    eventually(lambda: changes.saw({RESOURCE: 3}, {RESOURCE: 3}), what="the kubelet told of three devices")

    with open(control, "w") as f:
        json.dump({"unhealthy": ["GPU-1"]}, f)
    eventually(lambda: manager.allocatable() == {RESOURCE: 2}, what="GPU-1 unhealthy")
    assert manager.capacity() == {RESOURCE: 3}
    assert manager.devices(RESOURCE)["GPU-1"] == "Unhealthy"
    eventually(lambda: changes.saw({RESOURCE: 3}, {RESOURCE: 2}), what="the kubelet told of two healthy")


def test_allocation_takes_the_plugins_preferred_ids_then_fills_from_available(manager, start_plugin, eventually):
    start_plugin("GPU-0,GPU-1,GPU-2,GPU-3", "--preferred", "GPU-3,GPU-1")
    eventually(ready(manager, 4), what="four healthy devices")

    first = manager.allocate("uid-a", "a", "default", "main", RESOURCE, 1)
    assert first.envs["FAKE_VISIBLE_DEVICES"] == "GPU-3"
    second = manager.allocate("uid-b", "b", "default", "main", RESOURCE, 2)
    # GPU-3 is taken: the plugin prefers GPU-1, the kubelet fills the second from what is left.
    assert second.envs["FAKE_VISIBLE_DEVICES"] == "GPU-1,GPU-0"
    assert {tuple(a.device_ids) for a in manager.allocations()} == {("GPU-3",), ("GPU-0", "GPU-1")}


def test_a_container_asking_again_gets_the_same_devices(manager, start_plugin, eventually):
    start_plugin("GPU-0,GPU-1")
    eventually(ready(manager, 2), what="two devices")
    first = manager.allocate("uid-a", "a", "default", "main", RESOURCE, 1)
    again = manager.allocate("uid-a", "a", "default", "main", RESOURCE, 1)
    assert again == first
    assert len(manager.allocations()) == 1
    with pytest.raises(AdmissionError, match="changed request"):
        manager.allocate("uid-a", "a", "default", "main", RESOURCE, 2)


def test_too_few_devices_then_release_frees_them(manager, start_plugin, eventually):
    start_plugin("GPU-0,GPU-1")
    eventually(ready(manager, 2), what="two devices")
    manager.allocate("uid-a", "a", "default", "main", RESOURCE, 2)
    with pytest.raises(AdmissionError) as refused:
        manager.allocate("uid-b", "b", "default", "main", RESOURCE, 1)
    assert refused.value.reason == "UnexpectedAdmissionError"
    assert "requested number of devices unavailable for example.com/gpu. Requested: 1, Available: 0" in str(refused.value)

    assert sorted(manager.release_pod("uid-a")) == ["GPU-0", "GPU-1"]
    granted = manager.allocate("uid-b", "b", "default", "main", RESOURCE, 1)
    assert granted.envs["FAKE_VISIBLE_DEVICES"] == "GPU-0"


def test_plugin_allocate_error_becomes_admission_error_with_its_message(manager, start_plugin, eventually):
    start_plugin("GPU-0", "--fail-allocate", "GPU-0 is fenced off by Tessera")
    eventually(ready(manager, 1), what="one device")
    with pytest.raises(AdmissionError) as refused:
        manager.allocate("uid-a", "a", "default", "main", RESOURCE, 1)
    assert refused.value.message == (
        "Allocate failed due to rpc error: code = Unknown desc = GPU-0 is fenced off by Tessera, which is unexpected"
    )
    assert manager.allocations() == []


def test_resource_without_plugin_is_refused(manager):
    with pytest.raises(AdmissionError, match="cannot allocate unregistered device example.com/gpu"):
        manager.allocate("uid-a", "a", "default", "main", RESOURCE, 1)


@pytest.mark.parametrize(
    ("version", "resource", "message"),
    [
        ("v1alpha", RESOURCE, "requested device plugin version v1alpha is not supported"),
        ("v1beta1", "gpu", "the ResourceName 'gpu' is invalid"),
    ],
)
def test_bad_registration_is_rejected(manager, version, resource, message):
    with grpc.insecure_channel(f"unix://{manager.socket_path}") as channel:
        with pytest.raises(grpc.RpcError) as rejected:
            deviceplugin_grpc.RegistrationStub(channel).Register(
                api.RegisterRequest(version=version, endpoint="x.sock", resource_name=resource), timeout=5
            )
    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in rejected.value.details()
    assert manager.capacity() == {}


def test_plugin_death_makes_devices_unhealthy_at_once_and_removes_them_after_grace(
    manager, changes, start_plugin, eventually
):
    plugin = start_plugin()
    eventually(ready(manager), what="three devices")
    plugin.kill()
    eventually(lambda: manager.allocatable() == {RESOURCE: 0}, timeout=2, what="devices unhealthy")
    assert manager.capacity() == {RESOURCE: 3}
    eventually(lambda: changes.saw({RESOURCE: 3}, {RESOURCE: 0}), what="the kubelet told of none healthy")
    eventually(lambda: manager.capacity() == {}, timeout=3, what="resource removed after grace period")
    # The callback follows the state change from the expiry thread: wait for it, don't race it.
    eventually(lambda: changes.calls[-1] == ({}, {}), timeout=2, what="the removal reported to the kubelet")


def test_a_plugin_registering_again_replaces_the_old_endpoint(manager, start_plugin, eventually):
    old = start_plugin("OLD-0,OLD-1")
    eventually(ready(manager, 2), what="old plugin's devices")
    start_plugin("NEW-0,NEW-1,NEW-2")
    eventually(lambda: set(manager.devices(RESOURCE)) == {"NEW-0", "NEW-1", "NEW-2"}, what="new plugin's devices")
    old.kill()
    old.wait()
    threading.Event().wait(0.3)
    assert manager.allocatable() == {RESOURCE: 3}, "the replaced plugin's end must not touch the new one"


def test_restart_drops_capacity_to_zero_until_the_plugin_registers_again(
    manager, changes, start_plugin, eventually
):
    plugin = start_plugin()
    eventually(ready(manager), what="three devices")
    held = manager.allocate("uid-a", "a", "default", "main", RESOURCE, 1)

    manager.restart()
    assert changes.saw({RESOURCE: 0}, {RESOURCE: 0})
    eventually(ready(manager), what="plugin registered again after restart")
    assert plugin.stdout.readline().strip() == "REGISTERED 1"
    assert plugin.stdout.readline().strip() == "REGISTERED 2"

    # The checkpoint kept the allocation: the same container gets the same answer, the device stays taken.
    restored = manager.allocations()
    assert [(a.pod_uid, a.container_name, a.device_ids) for a in restored] == [("uid-a", "main", ["GPU-0"])]
    assert manager.allocate("uid-a", "a", "default", "main", RESOURCE, 1) == held
    with pytest.raises(AdmissionError, match="Available: 2"):
        manager.allocate("uid-b", "b", "default", "main", RESOURCE, 3)


def test_checkpoint_file_has_the_kubelets_shape(manager, node_dir, start_plugin, eventually):
    start_plugin("GPU-0@0,GPU-1@1,GPU-2")
    eventually(ready(manager), what="three devices")
    manager.allocate("uid-a", "a", "default", "main", RESOURCE, 1)
    manager.allocate("uid-b", "b", "default", "main", RESOURCE, 1)
    manager.allocate("uid-c", "c", "default", "main", RESOURCE, 1)
    with open(os.path.join(node_dir, "checkpoint")) as f:
        doc = json.load(f)
    assert set(doc) == {"Data", "Checksum"}
    entries = doc["Data"]["PodDeviceEntries"]
    assert [e["DeviceIDs"] for e in entries] == [{"0": ["GPU-0"]}, {"1": ["GPU-1"]}, {"-1": ["GPU-2"]}]
    assert set(entries[0]) == {"PodUID", "ContainerName", "ResourceName", "DeviceIDs", "AllocResp"}
    assert doc["Data"]["RegisteredDevices"] == {RESOURCE: ["GPU-0", "GPU-1", "GPU-2"]}
    assert api.ContainerAllocateResponse.FromString(base64.b64decode(entries[0]["AllocResp"])).envs[
        "FAKE_VISIBLE_DEVICES"
    ] == "GPU-0"


def test_a_corrupted_checkpoint_is_ignored_at_start(node_dir):
    path = os.path.join(node_dir, "checkpoint")
    with open(path, "w") as f:
        json.dump({"Data": {"PodDeviceEntries": [], "RegisteredDevices": {RESOURCE: ["GPU-0"]}}, "Checksum": 1}, f)
    with DeviceManager(os.path.join(node_dir, "device-plugins"), path) as dm:
        assert dm.capacity() == {}
        assert dm.allocations() == []
