"""A kubelet restart deletes the plugin's sockets: the plugin serves and registers again within two seconds."""

from __future__ import annotations

import time

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


def test_registered_again_within_two_seconds_of_a_kubelet_restart(make_node, start_plugin, kubelet, eventually):
    node = make_node("a100-80gb-mps.yaml")
    manager = kubelet(node)
    start_plugin(node, **{"default-mode": "mps"})
    eventually(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, what="registered")
    held = manager.allocate("p1", "p1", "default", "main", CORE, 40)
    for _ in range(2):
        start = time.monotonic()
        manager.restart()
        assert manager.allocatable() == {CORE: 0, MEM: 0}, "capacity 0 until the plugin registers again"
        eventually(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, timeout=2.0,
                   what="both resources registered again", interval=0.01)
        assert time.monotonic() - start < 2.0
    # the kubelet still knows what p1 holds, and the plugin answers the next pod as before
    again = manager.allocate("p1", "p1", "default", "main", CORE, 40)
    assert dict(again.envs) == dict(held.envs)
    other = manager.allocate("p2", "p2", "default", "main", CORE, 40)
    assert dict(other.envs)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "40"
