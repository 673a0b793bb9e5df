"""Each comparison fails when nvidia-smi says otherwise, naming the field: the stand-in nvidia-smi is told
to print one different value, and the check exits 1 with that check failed."""

from __future__ import annotations

import pytest

from checkrun import run_check


@pytest.mark.parametrize("section, override, check, said", [
    ("inventory", "minor_number=7", "GPU 0 minor number", "nvidia-smi 7"),
    ("inventory", "memory_total=40000 MiB", "GPU 0 memory total", "nvidia-smi 40000 MiB"),
    ("deviceplugin", "minor_number=7", "exclusive GPU 0: device nodes", "/dev/nvidia7"),
    ("exporter", "temperature.gpu=90", "GPU 0 DCGM_FI_DEV_GPU_TEMP", "nvidia-smi temperature.gpu 90"),
])
def test_a_different_value_fails_its_check(tmp_path, section, override, check, said):
    run = run_check(tmp_path, "--dry-run", "--only", section, env={"GPUCHECK_FAKESMI_OVERRIDE": override})
    assert run.rc == 1
    failed = {n: c for n, c in run.checks(section).items() if c["outcome"] == "failed"}
    assert check in failed, failed
    assert said in failed[check]["detail"]
