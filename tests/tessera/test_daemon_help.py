"""Every console script is installed and explains each flag in --help; nothing pretends to work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SCRIPTS = ["tessera", "tessera-device-plugin", "tessera-extender", "tessera-hook", "tessera-exporter",
           "kubectl-tessera"]


def script(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"console script {name} is not installed (pip install -e . installs it)")
    return found


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_runs(name):
    result = subprocess.run([script(name), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


@pytest.mark.parametrize("name, flags", [
    ("tessera-device-plugin", ["--device-plugin-path", "--kubeconfig", "--default-mode", "--xid-quiet-period-s",
                               "--config", "--log-format"]),
    ("tessera-extender", ["--listen", "--kubeconfig", "--policy", "--config"]),
    ("tessera-exporter", ["--listen", "--pod-resources-socket", "--interval-s", "--config"]),
    ("tessera-hook", ["--runtime", "--state-dir", "--allow-privileged", "--config"]),
])
def test_help_explains_each_flag_with_its_default(name, flags):
    env = {**os.environ, "COLUMNS": "400"}  # one flag per line, no hyphen breaks
    raw = subprocess.run([script(name), "--help"], capture_output=True, text=True, timeout=60, env=env).stdout
    text = " ".join(raw.split())  # argparse wraps help lines
    for flag in flags:
        assert flag in text, f"{name} --help does not mention {flag}"
    assert "(default: '/var/lib/kubelet/device-plugins')" in text or name != "tessera-device-plugin"
    assert "(default: 'fragmentation')" in text or name != "tessera-extender"
