"""MIG devices made and removed while the fake node runs, as a driver that partitions on demand does it.

A GPU in MIG mode with no layout starts empty; Tessera's NVML layer (tessera.nvmlmig) makes a MIG
device at a placement NVML lists, and every process of the node sees it (the control file carries
the change); a placement whose memory slices are taken, or a device still running processes, is
refused with the driver's errors; removing it frees the placement again.
"""

from __future__ import annotations

import pytest

from tessera import fakenvml
from tessera.fakenvml.control import FaultInjector
from tessera.fakenvml.description import load_description
from tessera.fakenvml.state import FakeNode
from tessera.nvml import Nvml
from tessera.nvmlmig import MigError

from fakegpu import write_node

NODE = {"node": "mig-node", "minor_numbers": [2, 0],
        "gpus": [{"model": "A100-SXM4-40GB", "count": 1, "mode": "mig"}, {"model": "A100-SXM4-40GB", "count": 1}]}


def placement(nvml: Nvml, profile: str, start: int):
    return next(p for p in nvml.mig_placements(0) if p.profile == profile and p.start == start)


def test_placements_are_the_profile_table_s(tmp_path):
    fakenvml.install(write_node(tmp_path, NODE))
    with Nvml() as nvml:
        offered = {(p.profile, p.start, p.size, p.slices) for p in nvml.mig_placements(0)}
        assert nvml.read_gpus()[0].mig_instances == ()
    assert ("3g.20gb", 4, 4, 3) in offered and ("7g.40gb", 0, 8, 7) in offered
    assert {s for name, s, _, _ in offered if name == "1g.5gb"} == set(range(7))
    assert {s for name, s, _, _ in offered if name == "2g.10gb"} == {0, 2, 4}


def test_a_made_device_is_seen_by_every_process_of_the_node_and_goes_when_removed(tmp_path):
    path = write_node(tmp_path, NODE)
    fakenvml.install(path)
    with Nvml() as nvml:
        made = nvml.create_mig_device(0, placement(nvml, "3g.20gb", 4))
        assert made.uuid.startswith("MIG-") and (made.placement_start, made.profile) == (4, "3g.20gb")
        # the GI's and CI's capability nodes, from the driver's table, keyed by the GPU's minor (2), not index
        assert made.capability_minors == (3 + (2 * 15 + made.gpu_instance_id) * 9,
                                          3 + (2 * 15 + made.gpu_instance_id) * 9 + 1)
        other = FakeNode(load_description(path))   # another process reading the same node
        assert [m.uuid for m in other.gpus[0].mig] == [made.uuid]
        assert nvml.read_gpus()[0].mig_instances == (made,)
        assert nvml.destroy_mig_device(0, made.gpu_instance_id) is True
        assert nvml.destroy_mig_device(0, made.gpu_instance_id) is False
        other.refresh()
        assert other.gpus[0].mig == [] and nvml.read_gpus()[0].mig_instances == ()


def test_taken_memory_slices_and_a_gpu_not_in_mig_mode_are_refused(tmp_path):
    fakenvml.install(write_node(tmp_path, NODE))
    with Nvml() as nvml:
        nvml.create_mig_device(0, placement(nvml, "2g.10gb", 2))
        with pytest.raises(MigError, match="INSUFFICIENT_RESOURCES"):
            nvml.create_mig_device(0, placement(nvml, "3g.20gb", 0))   # spans slices 0-3: 2-3 are taken
        beside = nvml.create_mig_device(0, placement(nvml, "3g.20gb", 4))
        assert beside.placement_start == 4
        with pytest.raises(MigError, match="GPU 1"):
            nvml.create_mig_device(1, placement(nvml, "1g.5gb", 0))
        assert [m.placement_start for m in nvml.read_gpus()[0].mig_instances] == [2, 4]


def test_a_device_running_processes_is_not_removed(tmp_path):
    path = write_node(tmp_path, NODE)
    fakenvml.install(path)
    with Nvml() as nvml:
        made = nvml.create_mig_device(0, placement(nvml, "1g.5gb", 3))
        FaultInjector(path).set_processes(0, [(4242, 1000)], gpu_instance_id=made.gpu_instance_id)
        with pytest.raises(MigError, match="IN_USE"):
            nvml.destroy_mig_device(0, made.gpu_instance_id)
        assert nvml.read_gpus()[0].mig_instances == (made,)
        FaultInjector(path).set_processes(0, [], gpu_instance_id=made.gpu_instance_id)
        assert nvml.destroy_mig_device(0, made.gpu_instance_id) is True


def test_a_mig_device_removed_while_it_is_read_is_gone_not_a_gpu_fault(tmp_path, monkeypatch):
    """A driver making MIG devices per claim may remove one between NVML listing it and reading it: the
    GPU reads well without it (a read error would mark the whole GPU out and taint every device on it)."""
    import pynvml

    fakenvml.install(write_node(tmp_path, NODE))
    with Nvml() as nvml:
        kept = nvml.create_mig_device(0, placement(nvml, "1g.5gb", 0))
        gone = nvml.create_mig_device(0, placement(nvml, "1g.5gb", 1))
        real = pynvml.nvmlDeviceGetGpuInstanceId

        def vanished(handle):
            if pynvml.nvmlDeviceGetUUID(handle) == gone.uuid:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
            return real(handle)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetGpuInstanceId", vanished)
        (gpu, _) = nvml.read_gpus()
    assert gpu.error is None and [m.uuid for m in gpu.mig_instances] == [kept.uuid]


def test_one_injector_follows_the_devices_made_and_removed_after_its_first_look(tmp_path):
    """An injector reads the node once and then only what was written since: it still checks a GPU
    instance against the node as it is now, after another writer made, removed or started it over."""
    path = write_node(tmp_path, NODE)
    fakenvml.install(path)
    inject = FaultInjector(path)
    with Nvml() as nvml:
        first = nvml.create_mig_device(0, placement(nvml, "1g.5gb", 0))
        inject.set_processes(0, [], gpu_instance_id=first.gpu_instance_id)   # its first look
        second = nvml.create_mig_device(0, placement(nvml, "1g.5gb", 1))
        inject.set_processes(0, [(7, 100)], gpu_instance_id=second.gpu_instance_id)
        inject.set_processes(0, [], gpu_instance_id=second.gpu_instance_id)
        assert nvml.destroy_mig_device(0, second.gpu_instance_id) is True
        with pytest.raises(ValueError, match=rf"no MIG GPU instance {second.gpu_instance_id} "
                                             rf"\(has: {first.gpu_instance_id}\)"):
            inject.set_processes(0, [], gpu_instance_id=second.gpu_instance_id)
        FaultInjector(path).reset()   # another writer starts the node over: what was made is gone
        with pytest.raises(ValueError, match=r"\(has: none\)"):
            inject.set_processes(0, [], gpu_instance_id=first.gpu_instance_id)
        again = nvml.create_mig_device(0, placement(nvml, "2g.10gb", 2))
        inject.set_processes(0, [], gpu_instance_id=again.gpu_instance_id)
        inject.control_path.unlink()   # no control file: the node is as described
        with pytest.raises(ValueError, match=r"\(has: none\)"):
            inject.set_processes(0, [], gpu_instance_id=again.gpu_instance_id)
