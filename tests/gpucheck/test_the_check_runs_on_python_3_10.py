"""The lent machine runs the check with its own python3, which may be as old as 3.10: the check and every
module it imports load there with only the packages ``scripts/gpu-check.sh prepare`` carries, and a run
without a driver reports every section. Needs a Python 3.10 here and a prepared .gpucheck-deps."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from checkrun import REPO

PROBE = """
import importlib, sys
import gpucheck.main, gpucheck.plugin, gpucheck.mpsclients
from gpucheck.sections import SECTION_NAMES
for name in SECTION_NAMES:
    importlib.import_module("gpucheck.sections." + name)
print(sys.version_info[:2])
"""


def _python310() -> str | None:
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")  # pyenv's shim may name one it lacks
    found = sorted(glob.glob(f"{pyenv}/versions/3.10*/bin/python3.10"))
    return found[0] if found else shutil.which("python3.10")


@pytest.mark.skipif(_python310() is None, reason="no Python 3.10 here")
@pytest.mark.skipif(not (REPO / ".gpucheck-deps" / "py").is_dir(), reason="run 'bash scripts/gpu-check.sh prepare' first")
def test_the_check_imports_and_runs_on_python_3_10(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": f"{REPO}:{REPO / '.gpucheck-deps' / 'py'}"}
    probe = subprocess.run([_python310(), "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "(3, 10)"
    run = subprocess.run([_python310(), "-m", "gpucheck", "--out", str(tmp_path / "out"), "--no-driver", "test"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "0 failed" in run.stdout
