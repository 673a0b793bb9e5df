"""The fake driver's MIG capability files and device minors are the real driver's, awkward parts kept.

``/proc/driver/nvidia-caps/mig-minors`` is one static table for GPU minors 0..31 (not indices),
with ``config 1``, ``monitor 2`` and 9 entries per GPU instance from 3; the per-instance access files
agree with it; and Tessera's NVML layer reads each GPU's minor number and each MIG device's
capability minors through them.
"""

from __future__ import annotations

import os
import re
import stat

import pytest

from tessera import fakenvml
from tessera.fakenvml.driverfiles import device_nodes, mig_minors_text, proc_files
from tessera.nvml import Nvml

from fakegpu import write_node

NODE = {"node": "mig-node", "minor_numbers": [3, 0],
        "gpus": [{"model": "A100-SXM4-40GB", "count": 2, "mode": "mig", "mig": ["3g.20gb", "1g.5gb", "1g.5gb"]}]}


def test_mig_minors_is_the_drivers_static_table():
    lines = mig_minors_text().splitlines()
    assert lines[:5] == ["config 1", "monitor 2", "gpu0/gi0/access 3", "gpu0/gi0/ci0/access 4", "gpu0/gi0/ci1/access 5"]
    assert "gpu0/gi1/access 12" in lines and "gpu1/gi0/access 138" in lines
    assert lines[-1] == "gpu31/gi14/ci7/access 4322" and len(lines) == 2 + 32 * 15 * 9


def test_gpus_read_their_minor_and_mig_devices_their_capabilities(tmp_path):
    path = write_node(tmp_path, NODE)
    description = fakenvml.install(path).description
    files = proc_files(description)
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    assert [g.minor_number for g in gpus] == [3, 0]
    for gpu in gpus:
        assert len(gpu.mig_instances) == 3
        for mig in gpu.mig_instances:
            base = f"/proc/driver/nvidia/capabilities/gpu{gpu.minor_number}/mig/gi{mig.gpu_instance_id}"
            access = [files[f"{base}/access"], files[f"{base}/ci{mig.compute_instance_id}/access"]]
            assert mig.capability_minors == tuple(int(re.search(r"DeviceFileMinor: (\d+)", a).group(1))
                                                  for a in access)


def test_a_driver_without_the_table_leaves_capabilities_unknown(tmp_path, monkeypatch):
    fakenvml.install(write_node(tmp_path, NODE))
    monkeypatch.setattr("tessera.migcaps.read_driver_file", lambda path: None)  # no nvidia-caps module
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    assert all(m.capability_minors is None for g in gpus for m in g.mig_instances)


@pytest.mark.skipif(os.geteuid() != 0, reason="making device nodes needs root (mknod)")
def test_simulated_node_gets_device_nodes_by_minor_and_capability_nodes(tmp_path):
    from simcluster.fakenodes import make_device_nodes

    path = write_node(tmp_path, NODE)
    assert make_device_nodes(tmp_path / "root", path)
    made = {str(p.relative_to(tmp_path / "root")): (os.major(p.stat().st_rdev), os.minor(p.stat().st_rdev))
            for p in (tmp_path / "root").rglob("*") if stat.S_ISCHR(p.lstat().st_mode)}
    assert made["dev/nvidia3"] == (195, 3) and made["dev/nvidia0"] == (195, 0) and "dev/nvidia1" not in made
    caps = {k for k in made if k.startswith("dev/nvidia-caps/")}
    # config, monitor, and on each of the 2 MIG GPUs a GI and a CI node for every GPU-instance id 1..14:
    # the instances laid out now and any made later (tessera.fakenvml.miglifecycle)
    assert len(caps) == 2 + 2 * 14 * 2
    assert {p.lstrip("/") for p, _, _ in device_nodes(fakenvml.load_description(path))} == set(made)
