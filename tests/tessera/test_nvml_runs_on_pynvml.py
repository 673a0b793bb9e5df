"""The NVML layer is production code calling pynvml; the fake answers behind pynvml's own names."""

from __future__ import annotations

import inspect

import pynvml

import tessera.nvml
from tessera import fakenvml
from tessera.nvml import Nvml

from fakegpu import one_model


def test_layer_calls_pynvml_module_functions_that_the_fake_replaced(tmp_path, monkeypatch):
    real_uuid = pynvml.nvmlDeviceGetUUID
    fakenvml.install(one_model(tmp_path, "A100-SXM4-80GB", count=3))
    assert pynvml.nvmlDeviceGetUUID is not real_uuid

    calls = []
    fake_uuid = pynvml.nvmlDeviceGetUUID
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUUID", lambda h: calls.append(h) or fake_uuid(h))
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    assert len(calls) == 3
    assert all(g.uuid.startswith("GPU-") for g in gpus)


def test_uninstall_restores_every_original_function(tmp_path):
    before = {name: getattr(pynvml, name) for name in dir(pynvml) if name.startswith("nvml")}
    fakenvml.install(one_model(tmp_path, "T4"))
    fakenvml.uninstall()
    after = {name: getattr(pynvml, name) for name in dir(pynvml) if name.startswith("nvml")}
    assert after == before


def test_the_fake_only_replaces_functions_pynvml_has():
    from tessera.fakenvml.functions import FUNCTION_NAMES

    missing = [name for name in FUNCTION_NAMES if not hasattr(pynvml, name)]
    assert missing == []


def test_only_the_nvml_and_gpm_modules_import_pynvml():
    import pathlib

    root = pathlib.Path(tessera.nvml.__file__).parent
    importers = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py")
        if "import pynvml" in p.read_text() and "fakenvml" not in p.parts
    )
    assert importers == ["gpm.py", "nvml.py", "topology.py"]
    assert "fakenvml" not in inspect.getsource(tessera.nvml).split("def _install_fake")[0]
