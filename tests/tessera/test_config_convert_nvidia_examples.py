"""``tessera config convert`` on NVIDIA's documented device plugin configs (time-slicing, MPS, MIG none,
mixed and single): each gives the Tessera config beside it in tests/tessera/nvidia_configs/, with a
comment line for whatever does not carry over, and the result passes ``tessera config check``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tessera.config import config_problems, parse_config
from tessera.config.document import ConfigDocument
from tessera.config.nvidia import NvidiaConfigError, convert_nvidia_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "tests/tessera/nvidia_configs"
NAMES = sorted(p.name.removesuffix(".yaml") for p in EXAMPLES.glob("*.yaml") if not p.name.endswith(".tessera.yaml"))


def convert(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tessera_cli.main", "config", "convert", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_every_kind_of_example_is_here():
    assert {"time-slicing", "time-slicing-rename-by-default", "mps", "mps-rename-by-default", "flags-mig-none",
            "flags-mig-mixed", "mig-single"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_example_converts_to_the_config_beside_it(name):
    result = convert(EXAMPLES / f"{name}.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (EXAMPLES / f"{name}.tessera.yaml").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_the_converted_config_passes_config_check(name, tmp_path):
    converted = (EXAMPLES / f"{name}.tessera.yaml").read_text()
    assert config_problems(ConfigDocument(yaml.safe_load(converted))) == []
    path = tmp_path / "tessera.yaml"
    path.write_text(converted)
    check = subprocess.run([sys.executable, "-m", "tessera_cli.main", "config", "check", str(path)],
                           capture_output=True, text=True, timeout=60, cwd=REPO)
    assert check.returncode == 0, check.stderr


def converted(text: str):
    return convert_nvidia_config(yaml.safe_load(text))


def test_time_slicing_carries_its_replicas_and_says_the_resource_name_changes():
    out = converted((EXAMPLES / "time-slicing.yaml").read_text())
    config = parse_config(out.document())
    assert config.deviceplugin.default_mode == "timeslice" and config.deviceplugin.timeslice_replicas == 10
    assert any("must ask nvidia.com/gpu.shared instead" in note for note in out.notes)


def test_mig_single_says_exactly_what_pods_ask_instead():
    out = converted((EXAMPLES / "mig-single.yaml").read_text())
    assert out.document() == {"version": "v1"}
    (note,) = out.notes
    assert "must ask nvidia.com/mig-<profile> instead" in note and "nvidia.com/gpu is always one whole GPU" in note


def test_mps_replicas_become_a_per_pod_share():
    out = converted((EXAMPLES / "mps.yaml").read_text())
    assert parse_config(out.document()).deviceplugin.default_mode == "mps"
    assert any("nvidia.com/mps-core: 10" in note for note in out.notes)


def test_what_cannot_carry_over_gets_its_own_line():
    out = converted((EXAMPLES / "time-slicing-by-gpu.yaml").read_text())
    assert out.deviceplugin["gpu_modes"] == {0: "timeslice", 1: "timeslice"}
    assert out.deviceplugin["device_list_strategy"] == "cdi"
    dropped = " | ".join(out.not_carried)
    for what in ("deviceIDStrategy 'index'", "rename 'gpu-ts'", "devices ['GPU-8c5e", "'nvidia.com/mig-1g.10gb'",
                 "failRequestsGreaterThanOne true"):
        assert what in dropped
    assert len(out.not_carried) == 5


@pytest.mark.parametrize("text, message", [
    ("- 1\n", "top level: expected NVIDIA's device plugin config"),
    ("flags: {migStrategy: none}\n", "version: None; NVIDIA's device plugin config has version: v1"),
    ("version: v1\nsharing:\n  timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2}]}\n"
     "  mps: {resources: [{name: nvidia.com/gpu, replicas: 2}]}\n", "timeSlicing and mps both"),
    ("version: v1\nsharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 0}]}}\n",
     "sharing.timeSlicing.resources[0].replicas: 0 is not a whole number of at least 1"),
    ("version: v1\nflags: [1]\n", "flags: expected a mapping"),
])
def test_a_file_that_is_not_nvidias_config_is_refused_by_name(text, message, tmp_path):
    with pytest.raises(NvidiaConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        converted(text)
    path = tmp_path / "nvidia.yaml"
    path.write_text(text)
    result = convert(path)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_an_unreadable_file_exits_2(tmp_path):
    result = convert(tmp_path / "missing.yaml")
    assert result.returncode == 2 and "No such file" in result.stderr and "Traceback" not in result.stderr


def test_the_readme_example_is_what_convert_prints():
    readme = (REPO / "README.md").read_text()
    block = readme.split("$ tessera config convert nvidia.yaml > tessera.yaml && cat tessera.yaml\n", 1)[1]
    shown_output = block.split("$ tessera config check", 1)[0]
    assert shown_output == (EXAMPLES / "time-slicing.tessera.yaml").read_text()
