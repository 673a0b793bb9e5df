"""Each injected fault shows in what the NVML layer returns, and the other GPUs still read."""

from __future__ import annotations

import threading
import time

import pytest

from tessera import fakenvml
from tessera.fakenvml import FaultInjector
from tessera.nvml import Nvml

from fakegpu import one_model, write_node


@pytest.fixture
def node(tmp_path):
    """Four whole A100-80GB GPUs: (path, injector, open Nvml)."""
    path = one_model(tmp_path, "A100-SXM4-80GB", count=4)
    fakenvml.install(path)
    with Nvml() as nvml:
        yield path, FaultInjector(path), nvml


def test_lost_gpu_is_reported_with_reason_and_the_others_still_read(node):
    _, inject, nvml = node
    uuids = [g.uuid for g in nvml.read_gpus()]
    nvml.events(0)  # registers the event set before the fault
    inject.lose_gpu(2)
    gpus, samples = nvml.read_gpus(), nvml.sample_gpus()
    assert gpus[2].error == "gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)"
    assert gpus[2].uuid == uuids[2]  # remembered from the last good read
    assert samples[2].error == "gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)"
    assert [g.healthy for g in gpus] == [True, True, False, True]
    assert [s.healthy for s in samples] == [True, True, False, True]
    assert all(len(g.nvlink_peers) == 2 for g in gpus if g.healthy)  # the lost one is nobody's peer
    events = nvml.events(1.0)
    assert [(e.kind, e.gpu_index, e.gpu_uuid, e.xid) for e in events] == [("xid", 2, uuids[2], 79)]


def test_restored_gpu_reads_again(node):
    _, inject, nvml = node
    inject.lose_gpu(1)
    assert not nvml.read_gpus()[1].healthy
    inject.restore_gpu(1)
    assert nvml.read_gpus()[1].healthy


def test_unknown_error_on_one_gpu(node):
    _, inject, nvml = node
    inject.fail_gpu(0, "UNKNOWN")
    gpus = nvml.read_gpus()
    assert gpus[0].error == "unknown NVML error (NVML_ERROR_UNKNOWN)"
    assert all(g.healthy for g in gpus[1:])


def test_xid_reaches_the_waiter(node):
    _, inject, nvml = node
    uuid = nvml.read_gpus()[3].uuid
    assert nvml.events(0) == []
    inject.inject_xid(3, 48)
    inject.inject_xid(1, 13)
    events = nvml.events(1.0)
    assert [(e.kind, e.gpu_index, e.xid) for e in events] == [("xid", 3, 48), ("xid", 1, 13)]
    assert events[0].gpu_uuid == uuid and events[0].gpu_instance_id is None
    assert nvml.events(0) == []


def test_a_blocked_waiter_gets_an_injected_xid_promptly(node):
    _, inject, nvml = node
    nvml.events(0)
    threading.Timer(0.2, inject.inject_xid, args=(0, 31)).start()
    started = time.monotonic()
    events = nvml.events(1.0)
    waited = time.monotonic() - started
    assert [(e.gpu_index, e.xid) for e in events] == [(0, 31)]
    assert waited < 0.5, f"event arrived after {waited:.3f}s, not promptly"


def test_ecc_errors_count_remap_rows_and_raise_events(node):
    _, inject, nvml = node
    nvml.events(0)
    inject.inject_ecc(1, corrected=3, uncorrected=1)
    sample = nvml.sample_gpus()[1]
    assert (sample.ecc.volatile_corrected, sample.ecc.volatile_uncorrected) == (3, 1)
    assert (sample.ecc.aggregate_corrected, sample.ecc.aggregate_uncorrected) == (3, 1)
    assert sample.repair.remapped_rows_uncorrectable == 1 and sample.repair.remap_pending is True
    assert sample.repair.retired_pages_double_bit is None  # Ampere remaps rows, it does not retire pages
    assert nvml.sample_gpus()[0].ecc.volatile_uncorrected == 0
    assert sorted(e.kind for e in nvml.events(1.0)) == ["ecc_double_bit", "ecc_single_bit"]


def test_volta_retires_pages(tmp_path):
    path = one_model(tmp_path, "V100-SXM2-32GB", count=2)
    fakenvml.install(path)
    FaultInjector(path).inject_ecc(0, uncorrected=2)
    with Nvml() as nvml:
        repair = nvml.sample_gpus()[0].repair
    assert (repair.retired_pages_double_bit, repair.retirement_pending) == (2, True)
    assert repair.remapped_rows_uncorrectable is None


def test_processes_and_memory_used(node):
    _, inject, nvml = node
    inject.set_processes(2, [(4242, 8192), (4243, 1024)])
    sample = nvml.sample_gpus()[2]
    assert [(p.pid, p.used_memory_mib, p.mps_client) for p in sample.processes] == [(4242, 8192, False), (4243, 1024, False)]
    assert (sample.memory_used_mib, sample.memory_free_mib) == (9216, 81920 - 9216)
    inject.set_processes(2, [])
    assert nvml.sample_gpus()[2].memory_used_mib == 0


def test_mps_clients_are_marked(node):
    _, inject, nvml = node
    inject.set_processes(0, [(10, 4096), (11, 2048)], mps=True)
    sample = nvml.sample_gpus()[0]
    assert [(p.pid, p.mps_client) for p in sample.processes] == [(10, True), (11, True)]
    assert sample.memory_used_mib == 6144


def test_utilization(node):
    _, inject, nvml = node
    inject.set_utilization(3, 85, 40)
    samples = nvml.sample_gpus()
    assert (samples[3].gpu_util_pct, samples[3].memory_util_pct) == (85, 40)
    assert samples[3].power_w > samples[0].power_w and samples[3].sm_clock_mhz == 1410
    assert (samples[0].gpu_util_pct, samples[0].sm_clock_mhz) == (0, 210)


def test_processes_on_a_mig_instance(tmp_path):
    path = one_model(tmp_path, "A100-SXM4-80GB", count=1, mig=["3g.40gb", "3g.40gb"])
    fakenvml.install(path)
    inject = FaultInjector(path)
    with Nvml() as nvml:
        second = nvml.read_gpus()[0].mig_instances[1]
        inject.set_processes(0, [(77, 5000)], gpu_instance_id=second.gpu_instance_id)
        sample = nvml.sample_gpus()[0]
    assert [(p.pid, p.mig_uuid, p.gpu_instance_id) for p in sample.processes] == [(77, second.uuid, second.gpu_instance_id)]
    assert {m.uuid: m.memory_used_mib for m in sample.mig}[second.uuid] == 5000
    assert sample.memory_used_mib == 5000
    assert sample.gpu_util_pct is None  # a MIG-enabled GPU reports no utilization, as on real cards


@pytest.mark.parametrize("call, message", [
    (lambda i: i.inject_xid(9, 79), "GPU index 9 is not on node test-node"),
    (lambda i: i.set_utilization(0, 150), "gpu_pct 150 is not a percentage"),
    (lambda i: i.set_processes(0, [(1, 10**6)]), "more than the 81920 MiB"),
    (lambda i: i.fail_gpu(0, "BOGUS"), "NVML_ERROR_BOGUS is not an NVML error code"),
    (lambda i: i.set_processes(0, [(1, 10)], gpu_instance_id=3), "GPU 0 has no MIG GPU instance 3"),
])
def test_bad_injections_fail_in_the_caller(tmp_path, call, message):
    inject = FaultInjector(one_model(tmp_path, "A100-SXM4-80GB", count=1))
    with pytest.raises(ValueError, match=message):
        call(inject)
    assert not inject.control_path.exists()


def test_reset_forgets_faults(node):
    _, inject, nvml = node
    inject.lose_gpu(0)
    inject.set_utilization(1, 50)
    inject.reset()
    samples = nvml.sample_gpus()
    assert samples[0].healthy and samples[1].gpu_util_pct == 0


def test_faults_written_before_start_apply_without_events(tmp_path):
    path = write_node(tmp_path, {"node": "late", "gpus": [{"model": "T4", "count": 2}]})
    FaultInjector(path).lose_gpu(1)
    fakenvml.install(path)
    with Nvml() as nvml:
        assert nvml.read_gpus()[1].error == "gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)"
        assert nvml.events(0.1) == []
