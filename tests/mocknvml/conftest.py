"""NVIDIA's mock NVML, the second fake of the GPU (one Tessera did not write): built once per machine by
scripts/build-mocknvml.sh, loaded by child processes through LD_LIBRARY_PATH exactly as the real
libnvidia-ml.so.1 is, and configured by a YAML profile each test writes from NVIDIA's H100 profile."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mockprofile import REPO


@pytest.fixture(scope="session")
def mock_nvml() -> Path:
    """The folder scripts/build-mocknvml.sh built (lib/ and configs/); the tests skip, saying why, where it
    cannot be built (the Go module proxy refuses NVIDIA/k8s-test-infra, and no TESSERA_MOCKNVML_SRC)."""
    if os.environ.get("TESSERA_NO_MOCKNVML_BUILD"):
        pytest.skip("TESSERA_NO_MOCKNVML_BUILD is set: NVIDIA's mock NVML is not built")
    built = subprocess.run(["bash", str(REPO / "scripts" / "build-mocknvml.sh")], capture_output=True, text=True,
                           timeout=1800)
    if built.returncode != 0:
        why = (built.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"NVIDIA's mock NVML could not be built (exit {built.returncode}): {why}. Set "
                    "TESSERA_MOCKNVML_SRC to a clone of github.com/NVIDIA/k8s-test-infra holding the commit "
                    "scripts/build-mocknvml.sh pins")
    return Path(built.stdout.strip())
