"""The hook's settings on its hot path, without importing the config package (which loads YAML).

Each container start runs the hook, so the runtime's hook entry names every setting as a flag
(``tessera-hook install`` writes them so) and no file is read. :class:`HookSettings` mirrors
``tessera.config.HookConfig``; a test keeps their keys and defaults equal. Only when ``--config``
(or ``TESSERA_CONFIG``) names a file, or a flag is not one of these, does the hook take the full
config path (:func:`hook.main.settings_from_config`).
"""

from __future__ import annotations

import os

RUNTIMES = ("containerd", "crio")
CONFIG_ENV = "TESSERA_CONFIG"
# Not yet a HookConfig key (see the issue note): namespaces whose containers may reach GPUs
# without a grant, e.g. Tessera's own DaemonSets and the driver; only admins create pods there.
DEFAULT_EXEMPT_NAMESPACES = ("kube-system", "tessera-system")


class HookSettings:
    """What one hook run needs to know; defaults equal ``HookConfig``'s."""

    __slots__ = ("runtime", "state_dir", "grant_key_path", "allow_privileged", "mps_user", "exempt_namespaces")

    def __init__(self, runtime: str = "containerd", state_dir: str = "/run/tessera/containers",
                 grant_key_path: str = "/etc/tessera/node-grant.key", allow_privileged: bool = False,
                 mps_user: int = 1000, exempt_namespaces: tuple[str, ...] = DEFAULT_EXEMPT_NAMESPACES) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"--runtime: {runtime!r} is not one of {', '.join(RUNTIMES)}")
        if mps_user < 0:
            raise ValueError(f"--mps-user: {mps_user} is below the minimum 0")
        self.runtime, self.state_dir, self.grant_key_path = runtime, state_dir, grant_key_path
        self.allow_privileged, self.mps_user = allow_privileged, mps_user
        self.exempt_namespaces = tuple(exempt_namespaces)

    def as_flags(self) -> list[str]:
        """These settings as the hook's command-line flags (what ``install`` writes)."""
        return ["--runtime", self.runtime, "--state-dir", self.state_dir, "--grant-key-path", self.grant_key_path,
                "--allow-privileged" if self.allow_privileged else "--no-allow-privileged",
                "--mps-user", str(self.mps_user), "--exempt-namespaces", ",".join(self.exempt_namespaces)]


_VALUE_FLAGS = {"--runtime": "runtime", "--state-dir": "state_dir", "--grant-key-path": "grant_key_path",
                "--mps-user": "mps_user", "--exempt-namespaces": "exempt_namespaces"}
_IGNORED_VALUE_FLAGS = ("--log-level", "--log-format")


def parse_fast(argv: list[str]) -> tuple[str, HookSettings] | None:
    """``(stage, settings)`` for a hook-stage command line, or None where the full parser must decide.

    None for ``--help``, ``install``, ``--config``/``TESSERA_CONFIG``, an unknown flag, or no stage.
    """
    if os.environ.get(CONFIG_ENV):
        return None
    values: dict = {}
    stage = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if name in _VALUE_FLAGS or name in _IGNORED_VALUE_FLAGS:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                return None
            if name in _VALUE_FLAGS:
                values[_VALUE_FLAGS[name]] = value
        elif arg == "--allow-privileged":
            values["allow_privileged"] = True
        elif arg == "--no-allow-privileged":
            values["allow_privileged"] = False
        elif arg in ("prestart", "createRuntime", "poststop") and stage is None:
            stage = arg
        else:
            return None
        i += 1
    if stage is None:
        return None
    if "mps_user" in values:
        try:
            values["mps_user"] = int(values["mps_user"])
        except ValueError:
            raise ValueError(f"--mps-user: {values['mps_user']!r} is not a whole number") from None
    if "exempt_namespaces" in values:
        values["exempt_namespaces"] = tuple(n.strip() for n in values["exempt_namespaces"].split(",") if n.strip())
    return stage, HookSettings(**values)
