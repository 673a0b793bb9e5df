"""``kubectl tessera`` after install: the real kubectl finds the ``kubectl-tessera`` console script on PATH,
lists it among its plugins, and runs it as ``tessera`` with its own name in the usage lines."""

from __future__ import annotations

import os
import subprocess

from kubectl_plugin import VENV_BIN, kubectl_or_skip, plugin_env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([kubectl_or_skip(), *args], capture_output=True, text=True, timeout=60,
                          env=plugin_env(dict(os.environ)))


def test_kubectl_plugin_list_shows_kubectl_tessera():
    listed = _run("plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert str(VENV_BIN / "kubectl-tessera") in listed.stdout.splitlines()


def test_kubectl_tessera_help_is_tessera_s_help_under_kubectl_s_name():
    through_kubectl = _run("tessera", "--help")
    assert through_kubectl.returncode == 0, through_kubectl.stderr
    assert through_kubectl.stdout.startswith("usage: kubectl tessera ")
    direct = subprocess.run([str(VENV_BIN / "tessera"), "--help"], capture_output=True, text=True, timeout=60)
    assert direct.stdout.startswith("usage: tessera ")
    # Same subcommands and words: only the usage line's program name differs.
    assert through_kubectl.stdout.split("\n", 1)[1] == direct.stdout.split("\n", 1)[1]
    for sub in ("demo", "inventory", "inspect", "config", "replay", "fake-nvml"):
        assert f"    {sub}" in through_kubectl.stdout


def test_kubectl_tessera_subcommand_help_and_errors_name_kubectl_tessera():
    sub = _run("tessera", "inspect", "--help")
    assert sub.returncode == 0 and sub.stdout.startswith("usage: kubectl tessera inspect ")
    wrong = _run("tessera", "no-such-command")
    assert wrong.returncode == 2 and "kubectl tessera: error: argument COMMAND: invalid choice" in wrong.stderr
