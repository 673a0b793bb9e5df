"""The GPU check where there is no GPU: without a driver every section says so and it exits 0; the dry run
runs every section's comparisons against the fake NVML, the stand-in nvidia-smi, the fake MPS daemon and
fake CUDA clients, passes, and leaves no daemon behind."""

from __future__ import annotations

import pytest

from checkrun import run_check
from gpucheck.sections import SECTION_NAMES
from simcluster.fakemps import running_daemons


def test_without_a_driver_every_section_is_not_checked_and_the_check_exits_0(tmp_path):
    run = run_check(tmp_path, "--no-driver", "libnvidia-ml.so.1 not found (test)")
    assert run.rc == 0, run.stderr
    assert [s["name"] for s in run.report["sections"]] == list(SECTION_NAMES)
    for section in run.report["sections"]:
        assert section["outcome"] == "not checked"
        (check,) = section["checks"]
        assert check["detail"] == "no NVIDIA driver (libnvidia-ml.so.1 not found (test))"
    assert run.report["failed"] is False
    assert "no NVIDIA driver" in run.markdown and "0 failed" in run.markdown


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dry")
    return root, run_check(root, "--dry-run")


def test_the_dry_run_passes_every_section(dry_run):
    _, run = dry_run
    assert run.rc == 0, run.markdown
    assert run.report["failed"] is False
    outcomes = {s["name"]: s["outcome"] for s in run.report["sections"]}
    assert outcomes == {name: "passed" for name in SECTION_NAMES}
    assert "DRY RUN" in run.markdown and "FAKE" in run.markdown


def test_the_dry_run_compares_field_by_field(dry_run):
    _, run = dry_run
    inventory = run.checks("inventory")
    for field in ("UUID", "minor number", "memory total", "PCI bus id", "NUMA node", "MIG mode"):
        assert inventory[f"GPU 0 {field}"]["outcome"] == "passed"
    assert inventory["GPU 0 /dev/nvidia3"]["numbers"] == {"major": 195, "minor": 3}  # minor 3, index 0
    exporter = run.checks("exporter")
    compared = [n for n, c in exporter.items() if c["outcome"] == "passed" and "smi" in c["numbers"]]
    assert {"GPU 0 DCGM_FI_DEV_GPU_TEMP", "GPU 0 DCGM_FI_DEV_FB_USED", "GPU 0 DCGM_FI_DEV_POWER_USAGE"} <= set(compared)
    assert exporter["GPU 0 GPM metrics"]["outcome"] == "passed"


def test_the_dry_run_mps_section_runs_its_clients_and_stops_its_daemon(dry_run):
    root, run = dry_run
    mps = run.checks("mps")
    assert "FAKE" in mps["CUDA clients"]["detail"]
    assert mps["(a) 8 GiB grant stops a 12 GiB allocation"]["numbers"]["largest_ok_gib"] == 8
    assert mps["(b) 30 % active threads against 100 %"]["numbers"]["ratio"] == pytest.approx(0.3)
    assert mps["(c) per-process memory against the grant"]["numbers"]["used_mib"] == 2048
    assert mps["control daemon stopped"]["outcome"] == "passed"
    assert running_daemons(root) == []


def test_a_client_that_crashes_fails_its_step_and_the_daemon_is_still_stopped(tmp_path):
    run = run_check(tmp_path, "--dry-run", "--only", "mps", env={"GPUCHECK_FAKECUDA_FAIL": "matmul"})
    assert run.rc == 1
    mps = run.checks("mps")
    assert mps["(b) active threads"]["outcome"] == "failed"
    assert "matmul exited 1: fake CUDA client: matmul crashed" in mps["(b) active threads"]["detail"]
    assert mps["(c) per-process memory against the grant"]["outcome"] == "passed"  # the steps after it ran
    assert mps["control daemon stopped"]["outcome"] == "passed"
    assert running_daemons(tmp_path) == []


def test_a_card_in_mig_mode_is_checked_as_it_is(tmp_path):
    run = run_check(tmp_path, "--dry-run", "--fake-node", "a100-40gb-mig", "--only", "inventory", "deviceplugin")
    assert run.rc == 0, run.markdown
    inventory, plugin = run.checks("inventory"), run.checks("deviceplugin")
    caps = [n for n, c in inventory.items() if "/dev/nvidia-caps/nvidia-cap" in n and c["outcome"] == "passed"]
    assert caps, "MIG capability nodes are checked to exist"
    assert plugin["whole, timeslice, mps"]["outcome"] == "not checked"
    mig_answers = [n for n, c in plugin.items() if n.startswith("mig GPU") and c["outcome"] == "passed"]
    assert any(n.endswith("signed grant") for n in mig_answers)
