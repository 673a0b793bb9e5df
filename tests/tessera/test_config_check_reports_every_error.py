"""``tessera config check`` reports every error of a config file, each with its key and line, and a
hostile file (alias bomb, huge, deeply nested, not a mapping) ends in one clear line quickly; the
daemons still stop at the first error, in the same words."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tessera.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]

FIVE_MISTAKES = """\
version: v1
deviceplugin:
  default_mode: exclusive
  gpu_modes:
    0: mps
    3: mpss
  timeslice_replicas: 0
  device_plugn_path: /x
draplugin:
  gpus: [4, 5, 5]
extender:
  leader_election: "yes"
"""
EXPECTED = [
    (6, "deviceplugin.gpu_modes.3: 'mpss' is not one of exclusive, mig, mps, timeslice"),
    (7, "deviceplugin.timeslice_replicas: 0 is below the minimum 1"),
    (8, "deviceplugin.device_plugn_path: unknown key; did you mean device_plugin_path?"),
    (10, "draplugin.gpus[2]: GPU index 5 is named twice"),
    (12, "extender.leader_election: 'yes' is not true or false"),
]


def check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tessera_cli.main", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_five_mistakes_five_errors_each_on_its_line(tmp_path):
    path = tmp_path / "tessera.yaml"
    path.write_text(FIVE_MISTAKES)
    result = check(path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[:-1] == [f"{path}:{line}: {message}" for line, message in EXPECTED]
    assert lines[-1] == f"tessera: {path}: 5 errors"


def test_every_bad_item_of_a_list_or_mapping_is_reported(tmp_path):
    path = tmp_path / "tessera.yaml"
    path.write_text("deviceplugin:\n  gpu_modes: {1: a, 2: mps, 3: b}\n  fatal_xids:\n    - 48\n    - x\n    - y\n")
    lines = check(path).stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in lines[:-1]] == [
        "deviceplugin.gpu_modes.1", "deviceplugin.gpu_modes.3", "deviceplugin.fatal_xids[1]",
        "deviceplugin.fatal_xids[2]"]
    assert lines[2].startswith(f"{path}:5: ") and lines[3].startswith(f"{path}:6: ")


def test_gpus_given_to_both_the_device_plugin_and_the_dra_driver(tmp_path):
    path = tmp_path / "tessera.yaml"
    path.write_text("deviceplugin:\n  gpu_modes: {4: mps}\ndraplugin:\n  gpus: [4]\n  gpu_modes: {6: mig}\n")
    lines = check(path).stderr.strip().splitlines()
    assert lines[0].startswith(f"{path}:2: deviceplugin.gpu_modes.4: GPU 4 is in draplugin.gpus")
    assert lines[1].startswith(f"{path}:5: draplugin.gpu_modes.6: GPU 6 is not in draplugin.gpus")


def test_a_clean_file_exits_0(tmp_path):
    path = tmp_path / "tessera.yaml"
    path.write_text((REPO / "deploy/base/node-config.yaml").read_text())
    result = check(path)
    assert result.returncode == 0 and result.stdout.strip() == f"{path}: valid", result.stderr


def test_a_daemon_still_stops_at_the_first_error_in_the_same_words(tmp_path):
    path = tmp_path / "tessera.yaml"
    path.write_text(FIVE_MISTAKES)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: {EXPECTED[0][1]}"


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\ndeviceplugin:\n  fatal_xids: *j\n  gpu_modes: *j\n  node_name: *j\n"


HOSTILE = {
    "billion-laughs": (billion_laughs(), 1, "deviceplugin.gpu_modes: [[["),
    "huge": ("deviceplugin:\n" + "  # padding\n" * 200_000, 2, "larger than 1048576 bytes"),
    "deeply-nested": ("deviceplugin: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", 2, "nested too deeply"),
    "list-root": ("- 1\n- 2\n", 1, "top level: expected a mapping of settings, got [1, 2]"),
    "scalar-root": ("just words\n", 1, "top level: expected a mapping of settings, got 'just words'"),
    "missing": (None, 2, "No such file or directory"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_file_gets_a_clear_error_quickly(name, tmp_path):
    text, status, message = HOSTILE[name]
    path = tmp_path / f"{name}.yaml"
    if text is not None:
        path.write_text(text)
    started = time.monotonic()
    result = check(path)
    assert time.monotonic() - started < 20
    assert result.returncode == status, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert max(len(line) for line in result.stderr.splitlines()) < 400
