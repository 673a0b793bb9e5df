"""A config file that is not UTF-8, or nests too deeply to parse, ends every program with one line.

Each daemon (and the hook, and ``tessera config check``) prints one line on stderr naming the file
and what is wrong with it, and exits 2: no traceback, whoever reads the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tessera.config import ConfigFileError, load_config

REPO = Path(__file__).resolve().parents[2]
BAD_FILES = {
    "latin-1": (b"deviceplugin:\n  node_name: caf\xe9\n", "not UTF-8 text (byte 0xe9 on line 2)"),
    "nested": (b"deviceplugin: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    "bad-yaml": (b"deviceplugin: [unclosed\n  next: line\n", "not valid YAML: "),
}
PROGRAMS = {
    "device plugin": ["-m", "deviceplugin.main"],
    "exporter": ["-m", "exporter.main"],
    "extender": ["-m", "extender.main"],
    "hook": ["-m", "hook.main", "createRuntime"],
    "config check": ["-m", "tessera_cli.main", "config", "check"],
}


@pytest.fixture(params=sorted(BAD_FILES))
def bad_file(request, tmp_path) -> tuple[Path, str]:
    content, reason = BAD_FILES[request.param]
    path = tmp_path / f"{request.param}.yaml"
    path.write_bytes(content)
    return path, reason


def test_load_config_names_the_file_and_the_reason(bad_file):
    path, reason = bad_file
    with pytest.raises(ConfigFileError) as info:
        load_config(str(path))
    assert str(info.value).startswith(f"config file {path}: {reason}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_program_exits_2_with_one_line(program, tmp_path):
    path = tmp_path / "tessera.yaml"
    content, reason = BAD_FILES["latin-1"] if program != "hook" else BAD_FILES["nested"]
    path.write_bytes(content)
    argv = [*PROGRAMS[program], str(path)] if program == "config check" else [*PROGRAMS[program], "--config", str(path)]
    env = {k: v for k, v in os.environ.items() if k not in ("TESSERA_CONFIG", "KUBERNETES_SERVICE_HOST")}
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env=env, stdin=subprocess.DEVNULL)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"config file {path}: {reason}" in lines[0]
