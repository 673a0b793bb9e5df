"""``tessera-hook install`` writes what CRI-O or containerd needs to run the hook at every start."""

from __future__ import annotations

import json
import subprocess
import sys

REPO_ARGS = [sys.executable, "-m", "hook.main", "install"]


def install(tmp_path, *args):
    result = subprocess.run([*REPO_ARGS, "--root", str(tmp_path), "--hook-path", "/usr/bin/tessera-hook", *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_crio_hooks_d(tmp_path):
    out = install(tmp_path, "--runtime", "crio", "--state-dir", "/run/t")
    hooks = tmp_path / "etc/containers/oci/hooks.d"
    create = json.loads((hooks / "tessera-createruntime.json").read_text())
    stop = json.loads((hooks / "tessera-poststop.json").read_text())
    assert create["version"] == "1.0.0" and create["when"] == {"always": True}
    assert create["stages"] == ["createRuntime"] and stop["stages"] == ["poststop"]
    assert create["hook"]["path"] == "/usr/bin/tessera-hook"
    args = create["hook"]["args"]
    assert args[1] == "createRuntime" and args[args.index("--runtime") + 1] == "crio"
    assert args[args.index("--state-dir") + 1] == "/run/t"
    assert f"wrote {hooks / 'tessera-createruntime.json'}" in out


def test_containerd_base_spec_and_drop_in(tmp_path):
    toolkit = tmp_path / "etc/nvidia-container-runtime/config.toml"
    toolkit.parent.mkdir(parents=True)
    toolkit.write_text('disable-require = false\n#accept-nvidia-visible-devices-envvar-when-unprivileged = true\n'
                       '\n[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig"\n')
    out = install(tmp_path, "--runtime", "containerd")
    spec = json.loads((tmp_path / "etc/containerd/tessera-base-spec.json").read_text())
    assert spec["hooks"]["createRuntime"][0]["args"][:2] == ["tessera-hook", "createRuntime"]
    assert spec["hooks"]["poststop"][0]["args"][:2] == ["tessera-hook", "poststop"]
    assert {"destination": "/proc", "type": "proc", "source": "proc",
            "options": ["nosuid", "noexec", "nodev"]} in spec["mounts"], "a base spec is a whole default spec"
    drop_in = (tmp_path / "etc/containerd/conf.d/tessera.toml").read_text()
    assert 'base_runtime_spec = "/etc/containerd/tessera-base-spec.json"' in drop_in
    assert 'container_annotations = ["tessera.io/*"]' in drop_in
    text = toolkit.read_text()
    assert "accept-nvidia-visible-devices-envvar-when-unprivileged = false\n" in text
    assert "= true" not in text and '[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig"' in text
    assert "nvidia-container-runtime/config.toml" in out


def test_no_toolkit_no_toolkit_file(tmp_path):
    install(tmp_path, "--runtime", "crio")
    assert not (tmp_path / "etc/nvidia-container-runtime").exists()


def test_containerd_config_dir_elsewhere_is_where_the_files_go_and_what_the_drop_in_names(tmp_path):
    # k3s keeps containerd's configuration under /var/lib/rancher/k3s/agent/etc/containerd.
    k3s = "/var/lib/rancher/k3s/agent/etc/containerd"
    out = install(tmp_path, "--runtime", "containerd", "--containerd-config-dir", k3s)
    assert (tmp_path / k3s.lstrip("/") / "tessera-base-spec.json").is_file()
    drop_in = (tmp_path / k3s.lstrip("/") / "conf.d/tessera.toml").read_text()
    assert f'base_runtime_spec = "{k3s}/tessera-base-spec.json"' in drop_in   # the path as the host sees it
    assert f'imports = ["{k3s}/conf.d/*.toml"]' in out
    assert not (tmp_path / "etc/containerd").exists()
