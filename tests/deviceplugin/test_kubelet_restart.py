"""A kubelet restart deletes the plugin's sockets: the plugin serves and registers again (how fast:
bench/deviceplugin_bench.py)."""

from __future__ import annotations

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


def test_registered_again_after_a_kubelet_restart(make_node, start_plugin, kubelet, eventually):
    # How fast (target: 2 s) is bench/deviceplugin_bench.py's to measure; here a loaded CI machine
    # gets a generous limit.
    node = make_node("a100-80gb-mps.yaml")
    manager = kubelet(node)
    start_plugin(node, **{"default-mode": "mps"})
    eventually(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, what="registered")
    held = manager.allocate("p1", "p1", "default", "main", CORE, 40)
    for _ in range(2):
        manager.restart()
        assert manager.allocatable() == {CORE: 0, MEM: 0}, "capacity 0 until the plugin registers again"
        eventually(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, timeout=10.0,
                   what="both resources registered again", interval=0.01)
    # the kubelet still knows what p1 holds, and the plugin answers the next pod as before
    again = manager.allocate("p1", "p1", "default", "main", CORE, 40)
    assert dict(again.envs) == dict(held.envs)
    other = manager.allocate("p2", "p2", "default", "main", CORE, 40)
    assert dict(other.envs)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "40"
