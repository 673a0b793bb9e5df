"""The rooms of the tree import downward only: the core imports none of its users, the five daemons
(the DRA driver beside the four) import the core and not each other, the embedded cluster stands in for Kubernetes and hardware above
them, the real control plane (``realcluster``) runs upstream Kubernetes with the embedded cluster's
simulated nodes, and the ``tessera`` command sits on top. Read from the import graph of every module (imports
inside functions included), so a lazy import cannot hide an upward one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The allowed direction, written once: a room may import itself and the rooms listed for it.
ROOMS: dict[str, set[str]] = {
    "tessera": set(),
    "deviceplugin": {"tessera"},
    "draplugin": {"tessera"},
    "extender": {"tessera"},
    "hook": {"tessera"},
    "exporter": {"tessera"},
    "simcluster": {"tessera", "deviceplugin", "extender", "hook", "exporter"},
    "realcluster": {"tessera", "deviceplugin", "draplugin", "extender", "hook", "exporter", "simcluster"},
    "tessera_cli": {"tessera", "deviceplugin", "draplugin", "extender", "hook", "exporter", "simcluster",
                    "realcluster"},
    # The check on a real GPU drives the node daemons' own code; simcluster only for the dry run's fake MPS.
    "gpucheck": {"tessera", "deviceplugin", "hook", "exporter", "simcluster"},
}
# What stands in for Kubernetes or hardware lives in simcluster/ or beside the NVML access layer.
SIMULATION_WORDS = ("sim", "fake", "launch", "replay", "trace")


def imported_modules(path: Path, repo: Path = REPO) -> set[str]:
    """Every module ``path`` names in an import statement, resolved to absolute dotted names."""
    module = ".".join(path.relative_to(repo).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value))
    return names


def room_files(room: str, repo: Path = REPO) -> list[Path]:
    return sorted(p for p in (repo / room).rglob("*.py") if "_pb2" not in p.name)


def upward_imports(repo: Path = REPO) -> list[str]:
    """``file imports module`` for each import that goes against ``ROOMS``."""
    wrong = []
    for room, allowed in ROOMS.items():
        for path in room_files(room, repo):
            for name in sorted(imported_modules(path, repo)):
                target = name.split(".")[0]
                if target in ROOMS and target != room and target not in allowed:
                    wrong.append(f"{path.relative_to(repo)} imports {name}")
    return wrong


def test_every_room_of_the_tree_is_known():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages == set(ROOMS), "a new top-level package needs its place in ROOMS"


def test_imports_run_only_from_a_higher_room_to_a_lower_one():
    assert upward_imports() == []


@pytest.mark.parametrize("daemon", ["deviceplugin", "extender", "hook", "exporter"])
def test_no_stand_in_for_kubernetes_or_hardware_inside_a_daemon(daemon):
    stand_ins = [str(p.relative_to(REPO)) for p in room_files(daemon)
                 if any(word in part for part in p.relative_to(REPO / daemon).with_suffix("").parts
                        for word in SIMULATION_WORDS)]
    assert stand_ins == []


def test_the_check_sees_an_upward_import_hidden_in_a_function(tmp_path):
    (tmp_path / "tessera").mkdir()
    (tmp_path / "tessera" / "__init__.py").write_text("")
    (tmp_path / "tessera" / "bad.py").write_text("def f():\n    from extender.cache import X\n")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "worse.py").write_text("import importlib\nimportlib.import_module('exporter.server')\n")
    assert upward_imports(tmp_path) == ["tessera/bad.py imports extender.cache",
                                        "hook/worse.py imports exporter.server"]
