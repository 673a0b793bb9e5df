"""The NVML layer is production code calling pynvml; the fake answers behind pynvml's own names."""

from __future__ import annotations

import ast
import inspect
import tomllib
from pathlib import Path

import pynvml
import pytest

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


# The product's packages as pyproject.toml ships them; only these modules and the fake may import pynvml.
REPO = Path(__file__).resolve().parents[2]
PYNVML_IMPORTERS = ["tessera/devicecounters.py", "tessera/gpm.py", "tessera/nvml.py", "tessera/nvmlmig.py", "tessera/topology.py"]
FAKE = "tessera/fakenvml/"


def product_packages() -> list[str]:
    """The top-level packages pyproject.toml installs (``tessera*``, ``deviceplugin*``, ...)."""
    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    return sorted({pattern.rstrip("*.") for pattern in found["include"]})


def _is_pynvml(name: object) -> bool:
    return isinstance(name, str) and (name == "pynvml" or name.startswith("pynvml."))


def _dynamic_import_name(call: ast.Call) -> object:
    """The module a call such as ``__import__("x")`` or ``importlib.import_module("x")`` names."""
    func = call.func
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if called not in ("__import__", "import_module") or not call.args:
        return None
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) else None


def imports_pynvml(source: str) -> bool:
    """Whether a module imports pynvml in any form: ``import pynvml [as p]``, ``from pynvml[.x] import y``,
    ``__import__("pynvml")``, ``importlib.import_module("pynvml")``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(_is_pynvml(alias.name) for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_pynvml(node.module):
            return True
        if isinstance(node, ast.Call) and _is_pynvml(_dynamic_import_name(node)):
            return True
    return False


@pytest.mark.parametrize("form", ["import pynvml", "import pynvml as p", "import os, pynvml.smi",
                                  "from pynvml import nvmlInit", "from pynvml.smi import nvidia_smi",
                                  "__import__('pynvml')", "importlib.import_module('pynvml')",
                                  "from importlib import import_module\nimport_module('pynvml.smi')",
                                  "def f():\n    import pynvml"])
def test_every_import_form_is_seen(form):
    assert imports_pynvml(form)


@pytest.mark.parametrize("form", ["import pynvml_utils", "from . import pynvml", "x = 'import pynvml'",
                                  "# import pynvml", "importlib.import_module('json')"])
def test_what_does_not_import_pynvml_is_not_counted(form):
    assert not imports_pynvml(form)


def test_only_the_nvml_nvmlmig_gpm_and_topology_modules_import_pynvml():
    packages = product_packages()
    assert {"tessera", "deviceplugin", "extender", "hook", "exporter", "simcluster"} <= set(packages)
    importers = sorted(
        path for package in packages for p in (REPO / package).rglob("*.py")
        if not (path := p.relative_to(REPO).as_posix()).startswith(FAKE) and imports_pynvml(p.read_text())
    )
    assert importers == PYNVML_IMPORTERS
    assert "fakenvml" not in inspect.getsource(tessera.nvml).split("def _install_fake")[0]
