"""A name means one thing across the tree: a module name that once named three jobs names one now, and a
constant's name is not bound to two different strings (``TESSERA_PREFIX`` was ``tessera.io/`` in the
webhook and ``nvidia.com/`` in the device plugin; the demo's ``NAMESPACE`` was not Tessera's)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOMS = ("tessera", "deviceplugin", "extender", "hook", "exporter", "simcluster", "tessera_cli")
# Module names found naming several jobs; each may name one module now.
ONE_JOB_MODULE_NAMES = ("admission.py", "ledger.py")
# Constants that are one role with a value per module (each protobuf generator's output folder).
ONE_ROLE_PER_MODULE = {"VIRTUAL_PREFIX"}


def modules() -> list[Path]:
    return [p for room in ROOMS for p in sorted((REPO / room).rglob("*.py")) if "_pb2" not in p.name]


def string_constants(path: Path) -> dict[str, str]:
    """The module-level ``UPPER_CASE = "text"`` bindings of ``path``."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        targets, value = ((node.targets, node.value) if isinstance(node, ast.Assign) else
                          ([node.target], node.value) if isinstance(node, ast.AnnAssign) else ([], None))
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.update({t.id: value.value for t in targets if isinstance(t, ast.Name) and t.id.isupper()})
    return found


def test_a_module_name_once_shared_by_several_jobs_names_one():
    for name in ONE_JOB_MODULE_NAMES:
        holders = [str(p.relative_to(REPO)) for p in modules() if p.name == name]
        assert len(holders) <= 1, f"{name} names several jobs: {holders}"


def test_a_constant_name_is_not_bound_to_two_strings():
    values: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in modules():
        for name, value in string_constants(path).items():
            values[name][value].append(str(path.relative_to(REPO)))
    meanings = {name: dict(by_value) for name, by_value in values.items()
                if len(by_value) > 1 and name not in ONE_ROLE_PER_MODULE}
    assert meanings == {}
