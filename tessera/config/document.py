"""A config file as read from disk: its parsed document and the line each key is written on.

The line map names keys the way the schema's errors do (``deviceplugin.gpu_modes.3``,
``deviceplugin.fatal_xids[1]``), so an error's ``key`` finds its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from tessera.yamlfile import compose_yaml_text, read_text_file

# A Tessera config is a few kilobytes; anything far larger is a mistake or an attack, refused before
# the YAML parser spends seconds on it.
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ConfigDocument:
    """A parsed config file: ``data`` as YAML gives it, ``lines`` from key path to 1-based line."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, key: str | None) -> int | None:
        """The line of ``key``, else of the nearest enclosing key written in the file; None if neither."""
        while key:
            key = key.removesuffix(" key")
            if key in self.lines:
                return self.lines[key]
            cut = max(key.rfind("."), key.rfind("["))
            key = key[:cut] if cut > 0 else ""
        return None


def key_lines(root: yaml.Node | None) -> dict[str, int]:
    """Key path to line for every mapping key and list item under ``root``. Each node is visited once,
    so an alias (however often repeated) costs one visit: its first path is the one recorded."""
    lines: dict[str, int] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    while stack:
        node, prefix = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                path = f"{prefix}.{name}" if prefix else name
                lines.setdefault(path, key_node.start_mark.line + 1)
                stack.append((value_node, path))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}[{i}]"
                lines.setdefault(path, item.start_mark.line + 1)
                stack.append((item, path))
    return lines


def read_config_document(path: str) -> ConfigDocument:
    """Read and parse the config file at ``path`` with its key lines; YamlFileError where it cannot be
    read as YAML (missing, too large, not UTF-8, not YAML, nested too deeply)."""
    data, root = compose_yaml_text(read_text_file(path, MAX_CONFIG_BYTES))
    return ConfigDocument(data, key_lines(root))
