"""A kubelet restart deletes the plugin's sockets: the plugin serves and registers again, also when
restarts come back to back and when one comes while a Register is in flight (how fast:
bench/deviceplugin_bench.py)."""

from __future__ import annotations

import os
import threading

import pytest

from simcluster.kubelet.devicemanager import DeviceManager
from simcluster.kubelet.sockets import serve_unix
from tessera.kubeletapi import KUBELET_SOCKET_NAME, deviceplugin_grpc, deviceplugin_pb2 as api

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


@pytest.fixture
def mps_plugin_holding_p1(make_node, start_plugin, kubelet, eventually):
    """An MPS node's plugin registered with a simulated kubelet, pod p1 holding 40 cores: (node, kubelet,
    p1's Allocate answer)."""
    node = make_node("a100-80gb-mps.yaml")
    manager = kubelet(node)
    start_plugin(node, **{"default-mode": "mps"})
    eventually(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, what="registered")
    return node, manager, manager.allocate("p1", "p1", "default", "main", CORE, 40)


def test_registered_again_after_a_kubelet_restart(mps_plugin_holding_p1, eventually):
    # How fast (target: 2 s) is bench/deviceplugin_bench.py's to measure; here a loaded CI machine
    # gets a generous limit.
    _, manager, held = mps_plugin_holding_p1
    for _ in range(2):
        manager.restart()
        # Capacity 0 until the plugin registers again, which it may already have done by the time this
        # reads it: each resource is either forgotten or whole, never a stale count.
        after = manager.allocatable()
        assert set(after) == {CORE, MEM} and after[CORE] in (0, 800) and after[MEM] in (0, 640), after
        eventually(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, timeout=10.0,
                   what="both resources registered again", interval=0.01)
    # the kubelet still knows what p1 holds, and the plugin answers the next pod as before
    again = manager.allocate("p1", "p1", "default", "main", CORE, 40)
    assert dict(again.envs) == dict(held.envs)
    other = manager.allocate("p2", "p2", "default", "main", CORE, 40)
    assert dict(other.envs)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "40"


def test_registered_again_after_five_back_to_back_kubelet_restarts(mps_plugin_holding_p1, eventually):
    # Each restart comes as soon as the plugin has served its sockets again for the last one, while
    # its Register is on the way: the churn that left it waiting out a dead call for 5 s.
    node, manager, held = mps_plugin_holding_p1
    sockets = [node.plugin_dir / "tessera-mps-core.sock", node.plugin_dir / "tessera-mps-memory.sock"]
    for restart in range(5):
        manager.restart()
        # Capacity 0 until the plugin registers again, which it may already have done by the time this
        # reads it: each resource is either forgotten or whole, never a stale count.
        after = manager.allocatable()
        assert set(after) == {CORE, MEM} and after[CORE] in (0, 800) and after[MEM] in (0, 640), after
        if restart < 4:
            eventually(lambda: all(s.exists() for s in sockets), what=f"sockets served again after restart {restart}",
                       interval=0.005)
    eventually(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, timeout=30.0,
               what="both resources registered with the last kubelet", interval=0.01)
    again = manager.allocate("p1", "p1", "default", "main", CORE, 40)
    assert dict(again.envs) == dict(held.envs), "the kubelet's checkpoint and the plugin agree after the churn"


class HoldingKubelet(deviceplugin_grpc.RegistrationServicer):
    """A kubelet that takes every Register and never answers it, noting how long each call had left
    when it ended (the client gave up, or its deadline passed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: set[str] = set()
        self.left_at_end: dict[str, float] = {}

    def Register(self, request, context):  # noqa: N802
        ended = threading.Event()

        def on_end() -> None:
            with self.lock:
                self.left_at_end[request.resource_name] = context.time_remaining()
            ended.set()

        context.add_callback(on_end)
        with self.lock:
            self.arrived.add(request.resource_name)
        ended.wait(60)  # hang guard: the call ends when the plugin gives up or its deadline passes
        return api.Empty()


def test_a_kubelet_restart_during_a_register_is_followed_at_once(make_node, start_plugin, eventually):
    node = make_node("a100-80gb-mps.yaml")
    socket_path = str(node.plugin_dir / KUBELET_SOCKET_NAME)
    holder = HoldingKubelet()
    old = serve_unix(socket_path, lambda s: deviceplugin_grpc.add_RegistrationServicer_to_server(holder, s))
    try:
        start_plugin(node, **{"default-mode": "mps"})
        eventually(lambda: holder.arrived == {CORE, MEM}, timeout=60.0, what="both Registers held by the old kubelet")
        # The kubelet restarts: its socket is replaced (the old server, on the unlinked socket, still
        # holds both calls), the plugin's sockets are removed, a new kubelet serves.
        os.unlink(socket_path)
        manager = DeviceManager(str(node.plugin_dir), str(node.checkpoint),
                                pod_resources_socket=str(node.pod_resources)).start()
        try:
            eventually(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, timeout=30.0,
                       what="both resources registered with the new kubelet", interval=0.01)
            eventually(lambda: len(holder.left_at_end) == 2, what="the held Registers ended")
            # The plugin gave the stale calls up when it saw the new kubelet, not after waiting out
            # their 5 s deadline with its socket gone and nobody registering.
            assert all(left > 1.0 for left in holder.left_at_end.values()), holder.left_at_end
        finally:
            manager.stop()
    finally:
        old.stop(grace=None)
