"""How a GPU process finds its container, and a container's grant where the hook left no record."""

from __future__ import annotations

from exporter.attribution import ProcessOwners, attribute
from exporter.podresources import ContainerRef, PodDevices
from exporter.records import ContainerRecord, ref_of
from tessera.gpu import GpuInfo, GpuProcess, GpuSample
from tessera.grant import new_grant

GIB, MIB = 1 << 30, 1 << 20
CID = "ab" * 32
REF = ContainerRef("team", "train", "main")


def container_record(cgroups=(), pid=0, grants=()) -> ContainerRecord:
    return ContainerRecord(CID, pid, REF.pod, REF.namespace, "uid-1", REF.container,
                           cgroups={str(i): path for i, path in enumerate(cgroups)}, grants=grants)


def grant(resource: str, uuids: tuple[str, ...], core: int | None = None, mem_gib: int | None = None):
    """A signed grant's terms as the hook records them (its IDs one per GiB or core percent)."""
    unit, n = ("mem", mem_gib) if mem_gib else ("core", core)
    ids = [f"{u}::{unit}::{i}" for u in uuids for i in range(n // len(uuids))]
    return new_grant(resource, "node-1", ids, list(uuids), ["/dev/nvidia0"], core=core, mem_gib=mem_gib,
                     pipe="/run/tessera/mps/pipe" if core else None)


def record(cgroups=(), pid=0) -> ContainerRecord:
    return container_record(cgroups, pid, (grant("nvidia.com/mps-memory", ("GPU-0",), mem_gib=4),))


def proc_root(tmp_path, pid: int, line: str) -> str:
    (tmp_path / str(pid)).mkdir()
    (tmp_path / str(pid) / "cgroup").write_text(line + "\n")
    return str(tmp_path)


def test_a_process_in_a_child_cgroup_of_the_container_is_its(tmp_path):
    root = proc_root(tmp_path, 77, "0::/kubepods/pod1/c1/worker-3")
    assert ref_of(ProcessOwners([record(["/kubepods/pod1/c1"])], root).owner(77)) == REF


def test_a_cgroup_v1_path_naming_the_container_id_is_enough(tmp_path):
    root = proc_root(tmp_path, 78, f"4:devices:/system.slice/containerd.service/kubepods-x:cri-containerd:{CID}")
    assert ref_of(ProcessOwners([record(["/elsewhere"])], root).owner(78)) == REF


def test_an_unknown_or_gone_process_belongs_to_no_one(tmp_path):
    root = proc_root(tmp_path, 79, "0::/user.slice/session-1.scope")
    owners = ProcessOwners([record(["/kubepods/pod1/c1"])], root)
    assert owners.owner(79) is None and owners.owner(80) is None


def test_without_a_record_the_grant_comes_from_the_kubelets_device_ids(tmp_path):
    info = GpuInfo(index=0, uuid="GPU-0", memory_total_mib=81920)
    devices = PodDevices({REF: tuple(("nvidia.com/mps-core", f"GPU-0::core::{n}") for n in range(25))
                          + tuple(("nvidia.com/mps-memory", f"GPU-0::mem::{n}") for n in range(6))})
    sample = GpuSample(index=0, uuid="GPU-0", processes=(GpuProcess(pid=90, used_memory_mib=700, mps_client=True),))
    usages, unattributed = attribute([info], [sample], [], devices, ProcessOwners([], str(tmp_path)))
    assert [(u.ref, u.grant_memory_bytes, u.grant_core_ratio, u.used_bytes) for u in usages] == [
        (REF, 6 * GIB, 0.25, 0)]
    assert unattributed == {"GPU-0": 700 * MIB}  # the process has no record: counted, but for no one


def test_whole_gpus_through_mps_grant_each_gpu_its_part_of_the_memory_not_the_sum(tmp_path):
    """mps-core 200 with mps-memory 160 over two 80 GiB GPUs: 80 GiB and core 100 % on each GPU."""
    infos = [GpuInfo(index=i, uuid=f"GPU-{i}", memory_total_mib=81920) for i in (0, 1)]
    for order in (1, -1):   # the record's grants in either order
        grants = (grant("nvidia.com/mps-core", ("GPU-0", "GPU-1"), core=200),
                  grant("nvidia.com/mps-memory", ("GPU-0", "GPU-1"), mem_gib=160))[::order]
        rec = container_record((), 0, grants)
        usages, _ = attribute(infos, [], [rec], None, ProcessOwners([rec], str(tmp_path)))
        assert sorted((u.gpu_uuid, u.grant_memory_bytes, u.grant_core_ratio) for u in usages) == [
            ("GPU-0", 80 * GIB, 1.0), ("GPU-1", 80 * GIB, 1.0)]
