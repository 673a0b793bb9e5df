"""tessera-extender as a process: --help, flags, /healthz, JSON logs, clean SIGTERM; and the small
scheduler loop binding pending pods through it exactly as kube-scheduler would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from extender_cluster import api_server, create, gpu_pod, mps_nodes

from extender.kubeapi import KubeApi, api_client
from simcluster.extenders import free_port, spawn_extender, wait_healthy
from simcluster.simscheduler import SimScheduler


def test_help_names_the_flags():
    out = subprocess.run([sys.executable, "-m", "extender.main", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for flag in ("--listen", "--kubeconfig", "--config", "--policy", "--max-body-bytes", "--lease-name"):
        assert flag in out.stdout


def test_process_serves_schedules_through_the_loop_and_stops_on_sigterm(tmp_path):
    with api_server(tmp_path, mps_nodes(3, gpus=2)) as (srv, kubeconfig):
        listen = f"127.0.0.1:{free_port()}"
        log = tmp_path / "extender.log"
        proc = spawn_extender(kubeconfig, tmp_path, listen, extra_args=["--lease-namespace", "default"],
                              log_path=str(log))
        try:
            wait_healthy(f"http://{listen}", 30)
            api = KubeApi(api_client(str(kubeconfig)))
            loop = SimScheduler(api, f"http://{listen}", retry_s=0.3).start()
            try:
                for i in range(8):
                    create(srv, gpu_pod(f"job{i}", {"nvidia.com/mps-core": 20 + 5 * i, "nvidia.com/mps-memory": 1 + i}))
                create(srv, gpu_pod("elsewhere", {"nvidia.com/mps-core": 10}, scheduler="default-scheduler"))
                deadline = time.monotonic() + 15
                while loop.bound < 8 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert loop.bound == 8, loop.failures
            finally:
                loop.stop()
                api.close()
            pods = {p["metadata"]["name"]: p for p in srv.registry.list("pods")}
            assert all(pods[f"job{i}"]["spec"].get("nodeName") for i in range(8))
            assert "nodeName" not in pods["elsewhere"]["spec"]  # not Tessera's to schedule
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        events = [json.loads(line)["event"] for line in log.read_text().splitlines() if line.startswith("{")]
        assert "extender_listening" in events and "pod_bound" in events and events[-1] == "extender_stopped"


def test_given_typical_shapes_fix_the_model_and_a_bad_one_stops_the_start(tmp_path):
    from tessera.config import ExtenderConfig

    from extender.daemon import typical_shapes
    from extender.placement.fragmentation import FragmentationModel

    given = typical_shapes(ExtenderConfig(typical_shapes=["mps-core=50,cpu=4,memory=16Gi"] * 3 +
                                          ["gpu=1,cpu=8,models=T4|A10"]))
    assert isinstance(given, FragmentationModel) and not hasattr(given, "observe")  # binds do not change it
    assert sorted(w for _, w in given.shapes) == [1, 3]
    assert given.reserved_share("T4") == given.reserved_share("A10") == 1 / 4 and given.reserved_share("L4") == 0
    assert given.cpu_per_core == (3 * 4000 + 8000) / (3 * 50 + 100)
    assert hasattr(typical_shapes(ExtenderConfig()), "observe")  # none given: learned from binds

    config = tmp_path / "tessera.yaml"
    config.write_text("extender:\n  typical_shapes: ['mps-core=half']\n")
    out = subprocess.run([sys.executable, "-m", "extender.main", "--config", str(config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "extender.typical_shapes: shape 'mps-core=half'" in out.stderr and "Traceback" not in out.stderr
