"""``NodeDevices`` shows its callers methods, not its state: the GPUs, modes and health it holds are read
through views that hand out copies, and no module outside ``deviceplugin/rm/`` reaches past them."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from deviceplugin.rm import HealthTracker, NodeDevices
from tessera.nvml import Nvml

REPO = Path(__file__).resolve().parents[2]


def node_devices(tmp_path, monkeypatch) -> NodeDevices:
    path = tmp_path / "node.yaml"
    shutil.copy(REPO / "tessera" / "nodes" / "a100-80gb-mps.yaml", path)
    monkeypatch.setenv("TESSERA_FAKE_NVML", str(path))
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    return NodeDevices(gpus, default_mode="mps", gpu_modes={1: "exclusive"}, replicas=4,
                       health=HealthTracker([43], [48, 79], 300.0))


def test_no_state_is_public_and_the_views_are_copies(tmp_path, monkeypatch):
    rm = node_devices(tmp_path, monkeypatch)
    assert [name for name in vars(rm) if not name.startswith("_")] == []
    modes = rm.active_modes()
    assert modes[0] == "mps" and modes[1] == "exclusive"
    modes[0] = "mig"
    rm.gpu_infos().clear()
    assert rm.active_modes()[0] == "mps" and len(rm.gpu_infos()) == 8
    assert rm.gpu_health() == {i: True for i in range(8)} and rm.pending_modes() == {}


def test_callers_outside_rm_use_only_its_public_methods():
    public = {name for name in dir(NodeDevices) if not name.startswith("_")}
    reached = []
    for path in sorted((REPO / "deviceplugin").rglob("*.py")):
        if "rm" in path.relative_to(REPO / "deviceplugin").parts[:-1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr not in public and (
                    (isinstance(node.value, ast.Name) and node.value.id == "rm")
                    or (isinstance(node.value, ast.Attribute) and node.value.attr == "rm")):
                reached.append(f"{path.relative_to(REPO)}:{node.lineno} rm.{node.attr}")
    assert reached == []
