"""The control plane's processes: each started in a session of its own with its output in a log
file, waited for by readiness (as long as it lives and its log grows: simcluster.readiness), and
stopped by PID with everything it started."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from realcluster.stopsignals import signals_held
from simcluster.readiness import Awaited, NotReady, wait_ready
from tessera.log import get_logger

log = get_logger("realcluster")


@dataclass
class Component:
    """One running program of the control plane."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Component:
        """Start it; a stop signal (``stopsignals``) that comes meanwhile stops it again before it raises."""
        try:
            with open(self.log_path, "ab") as out, signals_held():   # held until its PID is known
                self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            with signals_held():
                self.stop()
            raise
        log.info("component_started", component=self.name, pid=self.proc.pid, log=str(self.log_path))
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace_s``; nothing of it is left running."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        try:  # whatever it started and left in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        log.info("component_stopped", component=self.name, status=self.proc.returncode)

    def tail(self, lines: int = 20) -> str:
        """The last lines of its log (for a failure's message)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def https_ok(url: str, ca: Path | None, cert: Path | None = None, key: Path | None = None) -> bool:
    """Whether ``url`` answers 200 over HTTPS (checked against ``ca``; not checked without one), with
    the client certificate given; False while it cannot be reached."""
    context = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()  # noqa: S323
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return False


def await_ready(component: Component, ready, what: str) -> None:
    """Until ``ready()``; NotReady with the end of its log if it exits or stalls first."""
    try:
        wait_ready([Awaited(component.name, ready, component.proc, component.log_path)], what,
                   report=lambda line: log.info("component_waiting", component=component.name, detail=line))
    except NotReady as exc:
        raise NotReady(f"{exc}\n--- last lines of {component.log_path} ---\n{component.tail()}") from None
