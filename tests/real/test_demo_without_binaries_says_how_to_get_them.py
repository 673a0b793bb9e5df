"""``tessera demo --control-plane real`` on a machine without the real control plane's programs ends at once
with one line saying how to get them (scripts/build-kube.sh or KUBEBUILDER_ASSETS), and starts nothing; so
does one given ``--workdir``, which only the embedded control plane takes."""

from __future__ import annotations

import os
import subprocess
import sys

TESSERA = [sys.executable, "-m", "tessera_cli.main"]
HANG_GUARD_S = 120  # it builds nothing and starts nothing; this only stops a hung test


def test_demo_on_the_real_control_plane_without_binaries_fails_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_KUBE_BIN"}
    # An empty KUBEBUILDER_ASSETS and an empty build cache: no folder anywhere holds the programs.
    env.update(KUBEBUILDER_ASSETS=str(empty), TESSERA_KUBE_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([*TESSERA, "demo", "--control-plane", "real", "--png", str(tmp_path / "o.png")],
                            capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path, env=env)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tessera demo: --control-plane real: no real Kubernetes binaries"), lines[0]
    assert f"KUBEBUILDER_ASSETS={empty} lacks etcd" in lines[0]
    assert "bash scripts/build-kube.sh" in lines[0] and "set KUBEBUILDER_ASSETS to a folder" in lines[0]
    assert not result.stdout and not (tmp_path / "o.png").exists()


def test_demo_help_explains_the_control_plane_flag():
    result = subprocess.run([*TESSERA, "demo", "--help"], capture_output=True, text=True, timeout=HANG_GUARD_S)
    text = " ".join(result.stdout.split())
    assert "--control-plane {embedded,real}" in text
    assert "embedded (default)" in text and "bash scripts/build-kube.sh" in text and "KUBEBUILDER_ASSETS" in text


def test_demo_on_the_real_control_plane_refuses_workdir_with_one_line(tmp_path):
    result = subprocess.run([*TESSERA, "demo", "--control-plane", "real", "--workdir", str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "tessera demo: --workdir is for the embedded control plane; the real one works in a folder of its own "
        "under /tmp (its path is printed with --keep)"]
    assert not (tmp_path / "w").exists()
