"""The hook release copied onto every GPU node holds only what the hook imports, and runs on its own.

A release is built from this checkout (``python -m hook.release``, what deploy/'s init container runs)
and then run with an empty environment: its ``tessera-hook`` wrapper starts the release's own Python
isolated (``-I``), so a package the hook needs but the release lacks fails here as it would on a node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hook.release import HOOK_PACKAGES
from simcluster.kubelet.runtime import with_hook, write_bundle

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "deploy" / "node" / "install-hook.sh"
HEAVY = ("kubernetes", "numpy", "matplotlib", "fontTools")
NOT_ON_A_NODE = (*HEAVY, "grpc", "google", "cryptography", "pynvml", "PIL", "simcluster", "extender", "deviceplugin",
                 "pip")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release") / "r1"
    built = subprocess.run([sys.executable, "-m", "hook.release", str(folder)], capture_output=True, text=True,
                           timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert built.returncode == 0, built.stderr
    return folder


def site_packages(release: Path) -> Path:
    (site,) = release.glob("lib/python3.*/site-packages")
    return site


def run_alone(release: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The release's tessera-hook with no environment at all, as runc runs a hook entry that lists none."""
    return subprocess.run([str(release / "bin" / "tessera-hook"), *args], input=stdin, env={},
                          capture_output=True, text=True, timeout=60, cwd="/")


def hook_state(node, config: dict) -> str:
    bundle = write_bundle(node.root / f"bundle-{uuid.uuid4().hex[:8]}", config)
    return json.dumps({"ociVersion": "1.0.2", "id": bundle.name, "pid": 0, "bundle": str(bundle)})


def test_release_holds_the_hook_packages_and_nothing_heavy(release):
    site = site_packages(release)
    assert sorted(p.name for p in site.iterdir()) == sorted(HOOK_PACKAGES)
    assert not set(NOT_ON_A_NODE) & {p.name for p in site.iterdir()}
    for name in HEAVY:
        assert not list(release.rglob(name)) and not list(release.rglob(f"{name}.py")), f"{name} is on the node"
    stdlib = site.parent
    assert (stdlib / "os.py").is_file() and (stdlib / "lib-dynload").is_dir()
    assert not (stdlib / "ensurepip").exists() and not (stdlib / "test").exists()


def test_release_help_and_install_run_alone(release, tmp_path):
    result = run_alone(release, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tessera-hook") and "--grant-key-path" in result.stdout
    result = run_alone(release, "install", "--runtime", "crio", "--root", str(tmp_path), "--hook-path", "/h")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc/containers/oci/hooks.d/tessera-createruntime.json").is_file()


def test_release_python_sees_only_the_release(release):
    python = next((release / "bin").glob("python3.*"))
    probe = "import sys, yaml, structlog, hook.main, tessera.config; print('\\n'.join(sys.path))"
    result = subprocess.run([str(python), "-I", "-c", probe], env={"LD_LIBRARY_PATH": str(release / "lib")},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert all(p.startswith(str(release)) for p in result.stdout.split()), result.stdout


def test_release_hook_starts_a_granted_container_refuses_a_forged_one_and_cleans_up(release, node):
    flags = node.flags("containerd")
    _, response = node.allocate("nvidia.com/mps-core", [0], core=30)
    _, memory = node.allocate("nvidia.com/mps-memory", [0], mem_gib=10)
    state = hook_state(node, node.config("true", [response, memory], uid=1000))
    started = run_alone(release, "createRuntime", *flags, stdin=state)
    assert started.returncode == 0, started.stderr
    (record,) = node.records()
    assert record["container_id"] == json.loads(state)["id"]

    _, forged = node.allocate("nvidia.com/gpu", [1], key=b"k" * 32)
    refused = run_alone(release, "createRuntime", *flags, stdin=hook_state(node, node.config("true", [forged])))
    assert refused.returncode == 1 and refused.stderr.startswith("tessera-hook: "), refused.stderr
    assert len(node.records()) == 1

    stopped = run_alone(release, "poststop", *flags, stdin=state)
    assert stopped.returncode == 0, stopped.stderr
    assert node.records() == []


def test_release_hook_reads_a_config_file(release, node, tmp_path):
    # --config takes the full parser: tessera.config, PyYAML and structlog must all be in the release.
    config = tmp_path / "tessera.yaml"
    config.write_text(f"hook:\n  runtime: crio\n  state_dir: {node.state_dir}\n  grant_key_path: {node.key_path}\n"
                      "  mps_user: 1000\n")
    _, response = node.allocate("nvidia.com/gpu", [3])
    state = hook_state(node, node.config("true", [response], flavour="crio"))
    result = run_alone(release, "createRuntime", "--config", str(config), stdin=state)
    assert result.returncode == 0, result.stderr
    assert len(node.records()) == 1


def test_runtime_runs_the_release_as_its_hook(release, runtime, node):
    _, response = node.allocate("nvidia.com/gpu", [2])
    config = with_hook(node.config("cat /dev/nvidia2 2>&1; echo ran", [response]), node.flags("containerd"),
                       hook_path=str(release / "bin" / "tessera-hook"))
    cid = f"t{uuid.uuid4().hex[:12]}"
    result = runtime.oci.run(write_bundle(node.root / cid, config), cid, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "No such device or address" in result.stdout and "ran" in result.stdout
    assert [r["id"] for r in node.records()] == [], "poststop removed the record once the container ended"


def test_install_script_switches_current_to_a_new_release_and_keeps_one_before(tmp_path):
    host = tmp_path / "host"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOST_ROOT": str(host), "TESSERA_PREFIX": sys.prefix,
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
    releases = []
    for _ in range(3):
        done = subprocess.run(["sh", str(INSTALL_SCRIPT), "--runtime=containerd"], env=env, capture_output=True,
                              text=True, timeout=180, cwd=REPO)
        assert done.returncode == 0, done.stderr
        releases.append(os.readlink(host / "opt/tessera/current"))
    assert len(set(releases)) == 3
    kept = sorted(p.name for p in (host / "opt/tessera/releases").iterdir())
    assert kept == sorted(r.removeprefix("releases/") for r in releases[1:])
    spec = json.loads((host / "etc/containerd/tessera-base-spec.json").read_text())
    assert spec["hooks"]["createRuntime"][0]["path"] == "/opt/tessera/current/bin/tessera-hook"
    current = host / "opt/tessera/current"
    assert sorted(p.name for p in site_packages(current).iterdir()) == sorted(HOOK_PACKAGES)
    assert run_alone(current, "--help").returncode == 0


def install_release(host: Path, pythonpath: str) -> str:
    """deploy/'s init container once (install-hook.sh) with the hook's code from ``pythonpath``; the release
    ``/opt/tessera/current`` now names."""
    env = {**os.environ, "PYTHONPATH": pythonpath, "HOST_ROOT": str(host), "TESSERA_PREFIX": sys.prefix,
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(["sh", str(INSTALL_SCRIPT), "--runtime=containerd"], env=env, capture_output=True,
                          text=True, timeout=180, cwd=host.parent)   # not the checkout: `-m` puts the cwd first
    assert done.returncode == 0, done.stderr
    return os.readlink(host / "opt/tessera/current")


def test_an_upgrade_and_a_rollback_switch_the_hook_under_running_containers(tmp_path, node):
    """Day 2: the DaemonSet rolled to a new image, then back. Each init container builds the release of its
    own image's code and switches ``current``; a container started under one release is cleaned up by
    the next (its record written by one version, removed by the other), and the runtime's hook entry
    never changes."""
    older = tmp_path / "older"   # another image's code: this checkout's packages with a mark of their own
    for package in ("hook", "tessera"):
        shutil.copytree(REPO / package, older / package, ignore=shutil.ignore_patterns("__pycache__"))
    (older / "hook" / "image_mark.py").write_text("IMAGE = 'older'\n")
    host = tmp_path / "host"
    base_spec = host / "etc/containerd/tessera-base-spec.json"

    def marked() -> bool:
        return (site_packages(host / "opt/tessera/current") / "hook" / "image_mark.py").is_file()

    def start(stage_release: Path) -> str:
        _, response = node.allocate("nvidia.com/gpu", [1])
        state = hook_state(node, node.config("true", [response]))
        started = run_alone(stage_release, "createRuntime", *node.flags("containerd"), stdin=state)
        assert started.returncode == 0, started.stderr
        return state

    first = install_release(host, f"{older}:{REPO}")
    entry = json.loads(base_spec.read_text())["hooks"]
    assert marked()
    before_upgrade = start(host / "opt/tessera/current")

    second = install_release(host, str(REPO))   # the upgrade
    assert not marked() and second != first
    stopped = run_alone(host / "opt/tessera/current", "poststop", *node.flags("containerd"), stdin=before_upgrade)
    assert stopped.returncode == 0, stopped.stderr
    assert node.records() == [], "the new hook cleaned up what the old one recorded"
    before_rollback = start(host / "opt/tessera/current")

    third = install_release(host, f"{older}:{REPO}")   # the rollback
    assert marked() and third not in (first, second)
    assert sorted(p.name for p in (host / "opt/tessera/releases").iterdir()) == sorted(
        r.removeprefix("releases/") for r in (second, third))
    stopped = run_alone(host / "opt/tessera/current", "poststop", *node.flags("containerd"), stdin=before_rollback)
    assert stopped.returncode == 0, stopped.stderr
    assert node.records() == []
    assert json.loads(base_spec.read_text())["hooks"] == entry, "the runtime's hook entry is the same throughout"
