"""The fake ``nvidia-cuda-mps-control -d`` refuses a second daemon on one pipe directory, as NVIDIA's
does, and a killed daemon's directory is taken over by the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from simcluster.fakemps import CONTROL, running_daemons
from deviceplugin.mpsdaemon import MpsDaemon
from dpharness import wait_until
from simcluster.plugins import stop_mps_daemon


def control(tmp_path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "pipe"),
           "CUDA_MPS_LOG_DIRECTORY": str(tmp_path / "log")}
    return subprocess.run([sys.executable, CONTROL, *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_a_second_daemon_on_one_pipe_directory_is_refused(tmp_path):
    daemon = MpsDaemon(CONTROL, str(tmp_path / "pipe"), str(tmp_path / "log"))
    try:
        assert control(tmp_path, "-d").returncode == 0
        first = wait_until(daemon.pid, timeout=30, what="the first daemon's pid file")
        second = control(tmp_path, "-d")
        assert second.returncode == 1
        assert "An instance of this daemon is already running" in second.stderr
        assert running_daemons(tmp_path) == [first]
        assert control(tmp_path, stdin="get_default_active_thread_percentage\n").stdout.strip() == "100.0"
        os.kill(first, signal.SIGKILL)
        assert control(tmp_path, "-d").returncode == 0, "a killed daemon's pipe directory is free again"
        third = wait_until(lambda: daemon.pid() not in (None, first) and daemon.pid(), timeout=30,
                           what="the next daemon's pid file")
        assert running_daemons(tmp_path) == [third]
        assert control(tmp_path, stdin="get_server_list\n").returncode == 0
    finally:
        stop_mps_daemon(tmp_path)
    assert running_daemons(tmp_path) == []
