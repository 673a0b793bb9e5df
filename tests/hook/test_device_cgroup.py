"""The v1 device cgroup is tightened to the grant, whatever the runtime allowed on top of the spec."""

from __future__ import annotations

import pytest

from hook.devices import GpuMajors, read_majors, tighten_cgroup
from hook.errors import Refused

MAJORS = GpuMajors({195, 509, 237}, {509})


def cgroup(tmp_path, entries: str):
    directory = tmp_path / "kubepods" / "c1"
    directory.mkdir(parents=True)
    (directory / "devices.list").write_text(entries)
    (directory / "devices.deny").write_text("")
    return directory


def test_gpus_beyond_the_grant_are_denied(tmp_path):
    directory = cgroup(tmp_path, "c 1:3 rwm\nc 195:0 rw\nc 195:1 rwm\nc 195:255 rw\nc 509:0 rw\nc 237:4 r\n"
                                 "c *:* m\n")
    denied = tighten_cgroup({"devices": "/kubepods/c1"}, {(195, 0), (195, 255)}, MAJORS, root=str(tmp_path))
    assert denied == ["c 195:1 rwm", "c 237:4 rwm"]
    assert (directory / "devices.deny").read_text() == "c 195:1 rwmc 237:4 rwm"  # one write each (a file here)


def test_allow_everything_cgroup_is_refused(tmp_path):
    cgroup(tmp_path, "a *:* rwm\n")
    with pytest.raises(Refused, match="every GPU"):
        tighten_cgroup({"devices": "/kubepods/c1"}, {(195, 0)}, MAJORS, root=str(tmp_path))


def test_no_v1_device_cgroup_leaves_the_spec_check_in_charge(tmp_path):
    assert tighten_cgroup({"": "/kubepods/c1"}, {(195, 0)}, MAJORS, root=str(tmp_path)) == []


def test_dynamic_majors_come_from_proc_devices(tmp_path):
    devices = tmp_path / "devices"
    devices.write_text("Character devices:\n  1 mem\n195 nvidia-frontend\n509 nvidia-uvm\n237 nvidia-caps\n\n"
                       "Block devices:\n  7 loop\n510 nvidia-fake-block\n")
    majors = read_majors(str(devices))
    assert majors.all == {195, 509, 237} and majors.uvm == {509}
