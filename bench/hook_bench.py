"""How long tessera-hook adds to a container start: median and p99 wall time, as a printed table.

    .venv/bin/python bench/hook_bench.py [--runs 40] [--runtime-runs 10]

Three containers, as the simulated kubelet writes them (containerd shape): a granted one
(``nvidia.com/gpu``: verify, check, bind, record), a refused one (no grant but ``/dev/nvidia0``
in its spec), and an unrelated CPU container; beside them a no-op hook (``/bin/true``) in the
same run. Table 1 times the hook process alone, as the runtime spawns it (state on stdin).
Table 2, where runc and root are available, times a whole ``runc run`` of a busybox container
with the hook as its createRuntime and poststop hooks. Goal: granted median at most 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simcluster.kubelet import oci  # noqa: E402
from simcluster.kubelet.runtime import (  # noqa: E402
    OciRuntime, busybox_rootfs, hook_argv, unavailable, with_hook, write_bundle,
)
from tessera.grant import encode, generate_key, grant_env, new_grant  # noqa: E402

UUID = "GPU-00000000-1111-2222-3333-444444444444"


def configs(root: Path, key: bytes) -> dict[str, dict]:
    """config.json of the granted, refused and unrelated containers."""
    dev = root / "dev"
    dev.mkdir()
    for name, minor in (("nvidia0", 0), ("nvidiactl", 255)):
        os.mknod(dev / name, 0o666 | 0o020000, os.makedev(195, minor))
    api = oci.api
    grant = new_grant("nvidia.com/gpu", "bench-node", [UUID], [UUID], ["/dev/nvidia0"])
    response = api.ContainerAllocateResponse(
        envs=grant_env(grant), annotations=encode(grant, key),
        devices=[api.DeviceSpec(container_path=f"/dev/{n}", host_path=str(dev / n), permissions="rw")
                 for n in ("nvidia0", "nvidiactl")])
    pod = {"metadata": {"name": "bench", "namespace": "default", "uid": "uid-bench"},
           "spec": {"containers": [{"name": "main", "command": ["true"]}]}}
    rootfs = str(root / "rootfs")
    refused = oci.build_config(pod, "main", [], rootfs=rootfs)
    refused["linux"]["devices"].append({"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0})
    return {
        "granted": oci.build_config(pod, "main", [response], rootfs=rootfs),
        "refused": refused,
        "unrelated": oci.build_config(pod, "main", [], rootfs=rootfs),
    }


def prepare(root: Path) -> tuple[list[str], dict[str, dict], dict[str, Path]]:
    """Under ``root`` (as root: device nodes are made): the node's grant key, and the hook's flags, the
    three containers' config.json and their bundles, by kind (granted, refused, unrelated)."""
    key_path = root / "node.key"
    key = generate_key(str(key_path))
    flags = ["--runtime", "containerd", "--state-dir", str(root / "state"), "--grant-key-path", str(key_path)]
    docs = configs(root, key)
    bundles = {name: write_bundle(root / name, doc) for name, doc in docs.items()}
    return flags, docs, bundles


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_hook(argv: list[str], bundle: Path, runs: int, env: dict[str, str] | None = None) -> tuple[list[float], int]:
    """Wall seconds of each hook run (environment ``env``, else this one's), and the last exit status."""
    times, rc = [], 0
    for _ in range(runs):
        state = json.dumps({"ociVersion": "1.0.2", "id": f"b{uuid.uuid4().hex[:12]}", "pid": 0,
                            "bundle": str(bundle), "status": "creating"})
        start = time.perf_counter()
        proc = subprocess.run(argv, input=state.encode(), capture_output=True, env=env)
        times.append(time.perf_counter() - start)
        rc = proc.returncode
    return times, rc


def table(title: str, rows: list[tuple[str, list[float], str]]) -> None:
    print(f"\n{title}")
    print(f"{'container':<26} {'runs':>5} {'median ms':>10} {'p99 ms':>8}  result")
    for name, times, result in rows:
        print(f"{name:<26} {len(times):>5} {statistics.median(times) * 1e3:>10.1f} "
              f"{percentile(times, 0.99) * 1e3:>8.1f}  {result}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="hook runs per container kind")
    parser.add_argument("--runtime-runs", type=int, default=10, help="runc runs per container kind (0: skip)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("hook_bench: needs root (fake device nodes are made with mknod)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="tessera-hook-bench-"))
    try:
        flags, docs, bundles = prepare(root)
        rows = []
        noop, rc = time_hook(["/bin/true"], bundles["unrelated"], args.runs)
        rows.append(("no-op hook (/bin/true)", noop, f"exit {rc}"))
        for name in ("granted", "refused", "unrelated"):
            times, rc = time_hook(hook_argv("createRuntime", flags), bundles[name], args.runs)
            rows.append((f"tessera-hook {name}", times, f"exit {rc}"))
        # The same hook without site-packages start-up (the venv's editable-install finder costs ~20 ms).
        launcher = f"import sys; sys.path.insert(0, {str(REPO)!r}); from hook.main import main; sys.exit(main())"
        times, rc = time_hook([sys.executable, "-S", "-c", launcher, "createRuntime", *flags], bundles["granted"],
                              args.runs)
        rows.append(("granted, python -S", times, f"exit {rc}"))
        table(f"Hook process wall time ({hook_argv('createRuntime')[0]})", rows)
        if args.runtime_runs and unavailable("runc") is None and shutil.which("busybox"):
            busybox_rootfs(root / "rootfs", shutil.which("busybox"))
            runc = OciRuntime("runc", state_root=root / "runc-state")
            rows = []
            for name, hooked in (("unrelated", False), ("unrelated", True), ("granted", True), ("refused", True)):
                doc = with_hook(docs[name], flags) if hooked else with_hook(docs[name], hook_path="/bin/true")
                times, result = [], ""
                for _ in range(args.runtime_runs):
                    cid = f"b{uuid.uuid4().hex[:12]}"
                    bundle = write_bundle(root / cid, doc)
                    start = time.perf_counter()
                    result = f"exit {runc.run(bundle, cid).returncode}"
                    times.append(time.perf_counter() - start)
                label = f"{name} + {'tessera-hook' if hooked else '/bin/true'}"
                rows.append((label, times, result))
            table("Whole `runc run` of a busybox container (createRuntime + poststop hooks)", rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
