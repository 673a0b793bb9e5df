from __future__ import annotations

import pytest
import structlog

from tessera import fakenvml


@pytest.fixture(autouse=True)
def _fake_nvml_isolated(tmp_path, monkeypatch):
    """Every test starts on the real pynvml, with control files in its own folder, and leaves
    logging as it found it (a command that logs to a captured stream must not outlive the test)."""
    monkeypatch.delenv("TESSERA_FAKE_NVML", raising=False)
    monkeypatch.setenv("TESSERA_FAKE_NVML_CONTROL", str(tmp_path / "control"))
    yield
    fakenvml.uninstall()
    structlog.reset_defaults()
