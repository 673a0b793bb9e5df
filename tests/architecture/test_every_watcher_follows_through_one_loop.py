"""Every watcher of the tree lists and watches through ``tessera.follow``: no other module handles a
watch's 410 Gone (``WatchExpired``, or a name given to it), so the list-then-watch loop is written once."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOMS = ("tessera", "deviceplugin", "extender", "hook", "exporter", "simcluster", "tessera_cli")
THE_LOOP = Path("tessera/follow.py")


def _names(node: ast.expr | None) -> set[str]:
    """The names an ``except`` clause or an assignment's value mentions."""
    if node is None:
        return set()
    return {n.id if isinstance(n, ast.Name) else n.attr
            for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute))}


def hand_written_loops(repo: Path = REPO) -> list[str]:
    """``file:line`` of each handler of ``WatchExpired`` (or an alias of it) outside ``tessera/follow.py``."""
    trees = {path.relative_to(repo): ast.parse(path.read_text(encoding="utf-8"), str(path))
             for room in ROOMS for path in sorted((repo / room).rglob("*.py")) if "_pb2" not in path.name}
    aliases = {"WatchExpired"} | {target.id for tree in trees.values() for node in ast.walk(tree)
                                  if isinstance(node, ast.Assign) and _names(node.value) == {"WatchExpired"}
                                  for target in node.targets if isinstance(target, ast.Name)}
    return [f"{path}:{node.lineno}" for path, tree in trees.items() if path != THE_LOOP
            for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler) and _names(node.type) & aliases]


def test_no_module_but_the_follow_loop_handles_410_gone():
    assert hand_written_loops() == []
