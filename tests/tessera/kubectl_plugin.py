"""How the tests reach ``kubectl tessera``: the real kubectl the real tier builds (or KUBEBUILDER_ASSETS /
TESSERA_KUBE_BIN), and a PATH on which kubectl's plugin mechanism finds the installed ``kubectl-tessera``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent  # where `pip install -e .` put tessera and kubectl-tessera


def kubectl_or_skip() -> str:
    """The real kubectl's path, or a skip of the test saying why there is none."""
    import realcluster

    try:
        return realcluster.find_binaries()["kubectl"]
    except realcluster.BinariesMissing as exc:
        pytest.skip(f"no real kubectl to run the plugin through: {exc}")


def plugin_env(base: dict[str, str]) -> dict[str, str]:
    """``base`` with the installed console scripts first on PATH (skips when kubectl-tessera is not installed)."""
    if not (VENV_BIN / "kubectl-tessera").exists():
        pytest.skip(f"kubectl-tessera is not installed in {VENV_BIN} (pip install -e . installs it)")
    return {**base, "PATH": f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"}
