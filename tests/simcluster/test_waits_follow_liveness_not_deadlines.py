"""Waits for the embedded cluster's daemons end on what the daemon does, not on a clock tuned on a quiet
machine: a slow daemon that is still progressing is waited for past the demo's old 30 s deadline; one
whose process ended fails the wait at once, in one line naming it and its log; one alive but silent for
minutes fails as hung. ``tessera demo`` ends such a failure with that one line, no traceback, and keeps
every log.

Time is injected (a fake clock that moves only when the wait sleeps), so nothing here depends on how
busy the machine is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simcluster.readiness import Awaited, NotReady, wait_ready

OLD_PLUGIN_DEADLINE_S = 30.0   # the demo's former fixed wait for every device plugin
REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    """monotonic() and sleep() for a wait: time passes only when the wait sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: list = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for hook in self.on_sleep:
            hook(self.now)


@pytest.fixture
def alive():
    """A real process that lives until the test ends (a daemon still starting)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_slow_daemon_whose_log_grows_is_waited_for_past_the_old_deadline(alive, tmp_path):
    clock = FakeClock()
    log = tmp_path / "device-plugin.log"
    log.write_text("")
    ready_at = 4 * OLD_PLUGIN_DEADLINE_S   # 25 s just to import, then slow registration: 120 s in all

    def write_a_line_every_20_s(now: float) -> None:
        if int(now) % 20 == 0 and now < ready_at:
            with log.open("a") as fh:
                fh.write(f'{{"event": "starting", "t": {now}}}\n')
    clock.on_sleep.append(write_a_line_every_20_s)
    plugin = Awaited("the device plugin of node a100-mps", lambda: clock.now >= ready_at, alive, log)
    notes: list[str] = []
    wait_ready([plugin], "its node showed its Tessera resources", stall_s=60.0, interval_s=1.0,
               report=notes.append, clock=clock.monotonic, sleep=clock.sleep)
    assert clock.now >= ready_at > OLD_PLUGIN_DEADLINE_S
    # While it waited it said what it waited for.
    assert notes and all("the device plugin of node a100-mps" in n for n in notes)


def test_a_daemon_that_reports_phases_is_waited_for_without_any_log(alive):
    clock = FakeClock()
    phases = ["importing", "serving", "registered", "listed devices", "node status updated"]
    phase = lambda: phases[min(int(clock.now // 40), len(phases) - 1)]  # noqa: E731 - one phase per 40 s
    plugin = Awaited("the device plugin of node h100-mig", lambda: clock.now >= 170, alive, None, phase)
    wait_ready([plugin], "its node showed its Tessera resources", stall_s=60.0, interval_s=1.0,
               clock=clock.monotonic, sleep=clock.sleep)
    assert clock.now >= 170


def test_a_dead_daemon_fails_the_wait_at_once_naming_its_node_and_log(tmp_path):
    log = tmp_path / "nodes" / "a100-mps" / "device-plugin.log"
    log.parent.mkdir(parents=True)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], stdout=out)
    proc.wait()
    clock = FakeClock()
    healthy = Awaited("the device plugin of node a100-whole", lambda: False, None, None, lambda: clock.now)
    dead = Awaited("the device plugin of node a100-mps", lambda: False, proc, log)
    with pytest.raises(NotReady) as caught:
        wait_ready([healthy, dead], "its node showed its Tessera resources", clock=clock.monotonic, sleep=clock.sleep)
    message = str(caught.value)
    assert clock.now == 0.0, "the wait went on after the process had ended"
    assert "\n" not in message
    assert message == (f"the device plugin of node a100-mps exited with status 3 before its node showed its Tessera "
                       f"resources; read {log}")
    assert log.read_text() == "boom\n"


def test_an_alive_but_silent_daemon_fails_as_hung_only_after_minutes(alive, tmp_path):
    clock = FakeClock()
    log = tmp_path / "exporter.log"
    log.write_text("started\n")
    exporter = Awaited("the exporter of node t4-timeslice", lambda: False, alive, log)
    with pytest.raises(NotReady) as caught:
        wait_ready([exporter], "answering /healthz", stall_s=300.0, interval_s=1.0,
                   clock=clock.monotonic, sleep=clock.sleep)
    assert clock.now >= 300.0
    assert str(caught.value).startswith("the exporter of node t4-timeslice made no progress for 300 s")
    assert str(caught.value).endswith(f"before answering /healthz; read {log}")


FAILING_PLUGIN = textwrap.dedent("""
    import sys
    import simcluster.plugins as plugins
    real = plugins.plugin_command
    def failing(cluster, name, *args, **kwargs):
        argv, env = real(cluster, name, *args, **kwargs)
        if name == "a100-mps":   # this node's plugin dies at start, as one that cannot import would
            argv = [sys.executable, "-c", "import sys; print('plugin start failed here'); sys.exit(3)"]
        return argv, env
    plugins.plugin_command = failing
    from tessera_cli.main import main
    sys.exit(main(sys.argv[1:]))
""")


def test_demo_ends_a_dead_plugin_in_one_line_and_keeps_the_logs(tmp_path):
    result = subprocess.run([sys.executable, "-c", FAILING_PLUGIN, "demo", "--png", str(tmp_path / "o.png")],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)  # a hang guard only
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tessera demo: the device plugin of node a100-mps exited with status 3"), result.stderr
    log = Path(last.split("; read ", 1)[1].split(" (", 1)[0])
    try:
        assert log.name == "device-plugin.log" and "a100-mps" in log.parts
        assert log.read_text() == "plugin start failed here\n"      # the logs are kept
        assert "[4/10] starting 4 device plugins" in result.stderr and " failed" in result.stderr
    finally:
        shutil.rmtree(log.parents[2], ignore_errors=True)
