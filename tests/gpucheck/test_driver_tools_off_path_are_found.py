"""nvidia-smi and nvidia-cuda-mps-control are found where the driver installs them when PATH lacks them
(a minimal PATH on the lent machine), and not found where no such file is."""

from __future__ import annotations

from gpucheck import main


def test_a_tool_off_path_is_found_in_the_driver_folders(tmp_path, monkeypatch):
    tool = tmp_path / "nvidia-cuda-mps-control"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(main, "TOOL_DIRS", (str(tmp_path / "missing"), str(tmp_path)))
    assert main._find_tool("nvidia-cuda-mps-control") == str(tool)
    assert main._find_tool("nvidia-smi") is None
