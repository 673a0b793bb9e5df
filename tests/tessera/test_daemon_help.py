"""Every console script is installed and explains each flag in --help; nothing pretends to work."""

from __future__ import annotations

import ast
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deviceplugin.main import build_parser as device_plugin_parser
from draplugin.main import build_parser as dra_plugin_parser
from exporter.main import build_parser as exporter_parser
from extender.main import build_parser as extender_parser
from hook.main import build_parser as hook_parser
from tessera.config import TesseraConfig, config_from_args
from tessera.config.schema import section_fields

BIN = Path(sys.executable).parent
SCRIPTS = ["tessera", "tessera-device-plugin", "tessera-dra-plugin", "tessera-extender", "tessera-hook",
           "tessera-exporter", "kubectl-tessera"]


def script(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"console script {name} is not installed (pip install -e . installs it)")
    return found


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_runs(name):
    result = subprocess.run([script(name), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


# Each daemon: its parser, its config section, and flags that are not section keys.
DAEMONS = {
    "tessera-device-plugin": (device_plugin_parser, "deviceplugin", ["--config", "--log-level", "--log-format"]),
    "tessera-dra-plugin": (dra_plugin_parser, "draplugin", ["--config", "--log-level", "--log-format"]),
    "tessera-extender": (extender_parser, "extender", ["--config", "--log-level", "--log-format"]),
    "tessera-exporter": (exporter_parser, "exporter", ["--config", "--log-level", "--log-format"]),
    "tessera-hook": (hook_parser, "hook", ["--config", "--log-level", "--log-format", "--root", "--hook-path"]),
}
DEFAULT = re.compile(r"\(default: (.*)\)$")


def help_entries(text: str) -> dict[str, str]:
    """Each option's help entry (its lines joined) by each of its flags, from ``--help`` output."""
    entries: dict[str, str] = {}
    block: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith("  -") or not line.startswith("   "):  # a new option, a heading or a blank line
            if block:
                entry = " ".join(" ".join(block).split())
                for flag in re.findall(r"(?:^|, )(-[-\w]+)", block[0].strip().split("  ")[0]):
                    entries[flag] = entry
            block = [line] if line.startswith("  -") else []
        elif block:
            block.append(line)
    return entries


@functools.cache
def wide_help(name: str) -> str:
    """``<name> --help`` on a 400-column terminal: one option per entry, no hyphen breaks in a default."""
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([script(name), "--help"], capture_output=True, text=True, timeout=60, env=env).stdout


def flag_args(flag: str, shown: object) -> list[str]:
    """The command line a user writes to give ``flag`` the value --help showed."""
    if isinstance(shown, bool):
        return [flag if shown else "--no-" + flag[2:]]
    return [flag, str(shown)]


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_help_shows_each_flags_real_default(name):
    """Every setting flag's ``(default: X)`` is the value the daemon uses when the flag is left out, written
    so that giving ``X`` back on the command line yields that same value."""
    make_parser, section, other_flags = DAEMONS[name]
    raw = wide_help(name)
    assert " object at 0x" not in raw, f"{name} --help shows a Python object repr:\n{raw}"
    entries = help_entries(raw)
    for flag in other_flags:
        assert flag in entries, f"{name} --help does not mention {flag}"
    defaults = getattr(TesseraConfig(), section)
    keys = [f.name for f, _ in section_fields(type(defaults)) if f.metadata.get("flag", True)]
    assert keys, f"{name} has no setting flags"
    for key in keys:
        flag = "--" + key.replace("_", "-")
        assert flag in entries, f"{name} --help does not mention {flag}"
        shown = DEFAULT.search(entries[flag])
        assert shown, f"{name} --help gives no default for {flag}: {entries[flag]!r}"
        try:
            value = ast.literal_eval(shown.group(1))
        except (ValueError, SyntaxError):
            pytest.fail(f"{name} --help shows {flag}'s default as {shown.group(1)}, not a value one can write")
        args = make_parser().parse_args(flag_args(flag, value))
        written = getattr(getattr(config_from_args(args, section), section), key)
        assert written == getattr(defaults, key), \
            f"{name} {' '.join(flag_args(flag, value))} (the default --help shows) gives {written!r}, " \
            f"not the default {getattr(defaults, key)!r}"


def test_help_names_the_well_known_defaults():
    plugin, extender = help_entries(wide_help("tessera-device-plugin")), help_entries(wide_help("tessera-extender"))
    assert "(default: '/var/lib/kubelet/device-plugins')" in plugin["--device-plugin-path"]
    assert "(default: 'fragmentation')" in extender["--policy"]
    assert "(default: 'kube-system,tessera-system')" in help_entries(wide_help("tessera-hook"))["--exempt-namespaces"]
