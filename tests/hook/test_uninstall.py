"""``tessera-hook uninstall`` leaves a node as it was before ``install``: the runtime's hook configuration
gone, NVIDIA's container-toolkit switch back to its own line, everything else on the node untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOLKIT = Path(__file__).resolve().parents[2] / "deploy" / "node" / "nvidia-container-runtime-config.toml"
SWITCH = "accept-nvidia-visible-devices-envvar-when-unprivileged"


def hook(root: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "hook.main", *args, "--root", str(root)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def node(root: Path, toolkit_text: str | None) -> dict[str, bytes]:
    """A node's files before Tessera: containerd's own config, another hook, maybe the toolkit's config."""
    (root / "etc/containerd/conf.d").mkdir(parents=True)
    (root / "etc/containerd/config.toml").write_text('version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n')
    (root / "etc/containerd/conf.d/other.toml").write_text("version = 2\n")
    (root / "etc/containers/oci/hooks.d").mkdir(parents=True)
    (root / "etc/containers/oci/hooks.d/other.json").write_text("{}\n")
    if toolkit_text is not None:
        (root / "etc/nvidia-container-runtime").mkdir(parents=True)
        (root / "etc/nvidia-container-runtime/config.toml").write_text(toolkit_text)
    return tree(root)


@pytest.mark.parametrize("toolkit", [
    TOOLKIT.read_text(),                                            # NVIDIA's shipped file
    f"#{SWITCH} = true\n\n[nvidia-container-cli]\nldconfig = \"@/sbin/ldconfig\"\n",   # commented out
    f"{SWITCH} = true\n[nvidia-container-runtime]\nmode = \"cdi\"\n",                 # set, no blank line
    "[nvidia-container-cli]\nldconfig = \"@/sbin/ldconfig\"\n",     # absent: install adds it
    None,                                                           # no toolkit on the node
    f"#{SWITCH} = true\r\n\r\n[nvidia-container-cli]\r\nldconfig = \"@/sbin/ldconfig\"\r\n",  # CRLF
    "disable-require = false\n# a\x0cb\n[nvidia-container-cli]\nldconfig = \"@/sbin/ldconfig\"",   # form feed, no final newline
    "disable-require = false\n[nvidia-container-cli]\n",          # a key right above the first table
], ids=["shipped", "commented", "set-true", "absent", "no-toolkit", "crlf", "formfeed", "key-above-table"])
@pytest.mark.parametrize("runtime", ["containerd", "crio"])
def test_uninstall_leaves_the_node_as_before_install(tmp_path, runtime, toolkit):
    before = node(tmp_path, toolkit)
    hook(tmp_path, "install", "--runtime", runtime, "--hook-path", "/opt/tessera/current/bin/tessera-hook")
    hook(tmp_path, "install", "--runtime", runtime, "--hook-path", "/opt/tessera/current/bin/tessera-hook")
    installed = tree(tmp_path)
    assert installed != before
    if toolkit is not None:
        assert f"{SWITCH} = false" in installed["etc/nvidia-container-runtime/config.toml"].decode()
    out = hook(tmp_path, "uninstall", "--runtime", runtime)
    assert tree(tmp_path) == before
    if runtime == "containerd":
        assert "restart it" in out and "remove /opt/tessera only after that" in out
    assert hook(tmp_path, "uninstall", "--runtime", runtime).startswith("note: nothing of Tessera's found")


def test_uninstall_cleans_the_other_runtime_s_files_too(tmp_path):
    before = node(tmp_path, None)
    hook(tmp_path, "install", "--runtime", "crio")
    out = hook(tmp_path, "uninstall", "--runtime", "containerd")   # the cleanup DaemonSet's default
    assert tree(tmp_path) == before and "CRI-O stops running the hook" in out


def test_an_admin_s_own_change_to_the_toolkit_file_after_install_is_kept(tmp_path):
    node(tmp_path, f"#{SWITCH} = true\n\n[nvidia-container-cli]\nldconfig = \"@/sbin/ldconfig\"\n")
    hook(tmp_path, "install", "--runtime", "containerd")
    config = tmp_path / "etc/nvidia-container-runtime/config.toml"
    config.write_text(config.read_text() + "\n[nvidia-container-runtime]\ndebug = \"/var/log/nvidia.log\"\n")
    hook(tmp_path, "uninstall", "--runtime", "containerd")
    text = config.read_text()
    assert text.startswith(f"#{SWITCH} = true\n") and 'debug = "/var/log/nvidia.log"' in text
