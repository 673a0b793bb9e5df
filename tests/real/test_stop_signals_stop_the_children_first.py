"""``realcluster.stopsignals``, what ``realcluster.running()`` stops its programs by when the process gets
SIGTERM or SIGINT, seen on a stand-in child (``sleep``) in a Python process of its own, no Kubernetes
binaries needed: the child is stopped before the process ends as the signal ends it; a signal during the
stopping waits for its end; a handler the program set itself is left to it; the handlers are restored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from leftovers import said

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 120   # the waits below end on progress; this only stops a hung test
# What the holder says for the test begins with "@ " (its log lines go to stdout too).
HOLDER = """
import signal, sys, threading
from pathlib import Path
from realcluster.components import Component
from realcluster.stopsignals import signals_held, stopped_by_signals
signal.signal(signal.SIGINT, signal.default_int_handler)   # Python's own, as a run from a terminal has it
own = sys.argv[1] == "own-handler"
if own:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
with stopped_by_signals():
    child = None
    try:
        child = Component("sleeper", ["sleep", "600"], Path(sys.argv[2])).start()
        print("@", child.proc.pid, flush=True)
        if own:
            stop.wait()
            print("@ stopped by its own handler", flush=True)
        else:
            sys.stdin.readline()   # until the test's signal
    finally:
        with signals_held():
            if sys.argv[1] == "signal-while-stopping":
                print("@ stopping", flush=True)
                sys.stdin.readline()   # the test signals, then lets the stopping go on
            child.stop()
            print("@ child stopped", flush=True)
print("@ restored", {s: signal.getsignal(s) for s in before} == before, flush=True)
"""


def _holder(tmp_path: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", HOLDER, mode, str(tmp_path / "sleeper.log")], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _run(tmp_path: Path, mode: str, sig: signal.Signals) -> tuple[int, list[str], bool]:
    """(exit status, lines printed after the child's PID, whether the child still runs)."""
    proc = _holder(tmp_path, mode)
    pid = 0
    try:
        pid = int(said(proc))
        assert _alive(pid)
        proc.send_signal(sig)
        if mode == "signal-while-stopping":
            assert said(proc) == "stopping"
            proc.send_signal(sig)
            proc.stdin.write("go on\n")
            proc.stdin.flush()
        out, err = proc.communicate(timeout=HANG_GUARD_S)
        return proc.returncode, [line[2:] for line in out.splitlines() if line.startswith("@ ")], _alive(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_child_is_stopped_before_the_process_ends_as_the_signal_ends_it(tmp_path, sig):
    assert _run(tmp_path, "wait", sig) == (-sig, ["child stopped"], False)


def test_a_signal_while_the_children_stop_waits_for_the_stopping_to_end(tmp_path):
    status, lines, alive = _run(tmp_path, "signal-while-stopping", signal.SIGTERM)
    assert (status, lines, alive) == (-signal.SIGTERM, ["child stopped"], False)   # said after "stopping"


def test_a_handler_the_program_set_itself_is_left_to_it_and_restored(tmp_path):
    status, lines, alive = _run(tmp_path, "own-handler", signal.SIGTERM)
    assert (status, lines, alive) == (0, ["stopped by its own handler", "child stopped", "restored True"], False)
