"""A tenant holding the MPS pipe directory (it is mounted into every MPS container, read-write as
NVIDIA's device plugin mounts it) cannot take MPS down for its node: a control socket that is gone, or
that someone else listens on, or a pid file that lies, ends with one daemon that answers and that a
client reaches, the old one stopped, and the shares healthy (security review E6 / H4)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

from simcluster.fakemps import CONTROL, running_daemons
from deviceplugin.mpsdaemon import DaemonState
from dpharness import wait_until
from test_mps_daemon_slow_is_not_gone import one_gpu_node, start_daemon, supervisor, unhealthy_shares

HANG_GUARD_S = 150.0  # a hang guard only: each scenario settles in a few checks


def peer_pid(pipe) -> int | None:
    """The pid listening on the control socket, as a client's connection names it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(str(pipe / "control"))
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return pid
    except OSError:
        return None
    finally:
        sock.close()


def client_reaches_daemon(root) -> bool:
    """A client (the control program, as CUDA does: connect to ``control``) gets an answer."""
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log")}
    try:
        result = subprocess.run([sys.executable, CONTROL], input="get_default_active_thread_percentage\n", env=env,
                                capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False  # it connected to something that never answers
    return result.returncode == 0 and result.stdout.strip() == "100.0"


def answer_everything(server: socket.socket, done: threading.Event) -> None:
    """A tenant's listener on ``control`` that answers every command with an empty line."""
    server.settimeout(0.2)
    while not done.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                if conn.recv(4096):
                    conn.sendall(b"\n")
            except OSError:
                pass


@pytest.mark.parametrize("tenant", ["unlinks_the_socket", "listens_on_control", "answers_on_control",
                                    "unlinks_and_forges_the_pid_file"])
def test_a_tenant_in_the_pipe_directory_cannot_take_mps_down(tenant, tmp_path, monkeypatch, mps_root):
    rm = one_gpu_node(tmp_path, monkeypatch)
    pipe = mps_root / "pipe"
    old = start_daemon(mps_root)
    sup = supervisor(rm, mps_root)
    sup.daemon.start_grace_s = 0.5  # a daemon this old without its socket is not still starting
    assert sup.check() is None and sup.starts == 0, "the daemon answers before the tenant acts"

    os.unlink(pipe / "control")
    impostor, done = None, threading.Event()
    if tenant in ("listens_on_control", "answers_on_control"):
        impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        impostor.bind(str(pipe / "control"))
        impostor.listen(1)
    if tenant == "answers_on_control":
        threading.Thread(target=answer_everything, args=(impostor, done), daemon=True).start()
    if tenant == "unlinks_and_forges_the_pid_file":
        (pipe / "nvidia-cuda-mps-control.pid").write_text("x")
    try:
        def settled():
            if sup.check() is not None:
                return False
            daemons = running_daemons(mps_root)
            return len(daemons) == 1 and daemons[0] != old and peer_pid(pipe) == daemons[0] and daemons[0]

        new = wait_until(settled, timeout=HANG_GUARD_S, interval=0.1,
                         what=f"one new daemon that answers on the control socket after the tenant {tenant}")
    finally:
        done.set()
        if impostor is not None:
            impostor.close()
    assert running_daemons(mps_root) == [new], "the old daemon was stopped, not left beside the new one"
    assert sup.daemon.pid() == new
    assert client_reaches_daemon(mps_root), "a client reaches the daemon, not the tenant's listener"
    assert rm.mps_down is None and unhealthy_shares(rm) == 0, "the shares stay healthy"
    assert sup.check() is None and sup.starts == 1, "started once"


def test_a_daemon_with_a_full_backlog_is_slow_not_a_tenant_listener(tmp_path, monkeypatch, mps_root):
    """No connection to ask for its peer, the daemon is still told from a tenant's listener (by the
    socket bound to ``control``, which the daemon holds): waited for, not replaced."""
    rm = one_gpu_node(tmp_path, monkeypatch)
    pid = start_daemon(mps_root, TESSERA_FAKE_MPS_ANSWER_DELAY_S="600")
    sup = supervisor(rm, mps_root)
    sup.daemon.start_grace_s = 0.5
    queued = []
    try:
        while True:  # fill its backlog: each connection sends a command the daemon answers in 600 s
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.setblocking(False)
            try:
                conn.connect(str(mps_root / "pipe" / "control"))
            except BlockingIOError:
                conn.close()
                break
            conn.send(b"get_server_list\n")
            queued.append(conn)
            assert len(queued) < 1000, "the backlog never filled"
        assert sup.check() is DaemonState.SLOW
        assert running_daemons(mps_root) == [pid] and sup.starts == 0
        assert rm.mps_down is None and unhealthy_shares(rm) == 0
    finally:
        for conn in queued:
            conn.close()
