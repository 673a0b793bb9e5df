"""Reading a YAML (or JSON) file a person wrote, whatever it holds, into one line when it cannot be read.

Tessera's config file, the fake NVML's node descriptions and the simulated cluster's description
are hostile input: a file that is not UTF-8, not YAML, or nested deeper than the parser can
follow (PyYAML recurses once per level) ends in :class:`YamlFileError`, whose reason is one line
without the path (the caller names the file its own way), never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """A file that cannot be read as YAML; the message is one line and does not name the file."""

    def __init__(self, reason: str, unreadable: bool = False) -> None:
        super().__init__(reason)
        self.unreadable = unreadable  # the file could not be opened or read at all (OSError)


def _one_line(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        where = f" (line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1})" if err.problem_mark else ""
        return f"{err.problem}{where}"
    return " ".join(str(err).split())


def parse_yaml_text(text: str, what: str = "YAML") -> Any:
    """The document in ``text``; YamlFileError ("not valid <what>: ...", "nested too deeply ...")."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise YamlFileError(f"not valid {what}: {_one_line(err)}") from None
    except RecursionError:
        raise YamlFileError("nested too deeply to read (lists or mappings inside each other hundreds of "
                            "levels deep)") from None


def compose_yaml_text(text: str, what: str = "YAML") -> tuple[Any, yaml.Node | None]:
    """The document in ``text`` and its node tree (which knows each key's line); YamlFileError as
    :func:`parse_yaml_text`. An alias is one shared object in the document, never a copy, so an alias
    bomb costs no more than its text."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.YAMLError as err:
        raise YamlFileError(f"not valid {what}: {_one_line(err)}") from None
    except RecursionError:
        raise YamlFileError("nested too deeply to read (lists or mappings inside each other hundreds of "
                            "levels deep)") from None
    finally:
        loader.dispose()


def read_text_file(path: str | Path, max_bytes: int | None = None) -> str:
    """The UTF-8 text of the file at ``path``; YamlFileError with a one-line reason where it cannot be read,
    is not UTF-8, or is larger than ``max_bytes``."""
    try:
        with open(path, "rb") as f:
            raw = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except OSError as err:
        raise YamlFileError(err.strerror or str(err), unreadable=True) from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise YamlFileError(f"larger than {max_bytes} bytes, more than such a file ever needs")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise YamlFileError(f"not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line})") from None


def read_yaml_file(path: str | Path, what: str = "YAML") -> Any:
    """Read and parse the file at ``path``; YamlFileError with a one-line reason where it cannot be."""
    return parse_yaml_text(read_text_file(path), what)
