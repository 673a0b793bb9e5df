"""A real Prometheus (the Debian package's ``prometheus``) scraping the embedded cluster's daemons.

    prom = Prometheus(root, {"tessera-exporter": ["127.0.0.1:9400"]}, rule_files=[rules])
    prom.wait_for_targets()
    prom.query('tessera_gpu_health == 0')
    prom.stop()

Every job is scraped each second and rules are evaluated each second, so a demo or a test sees a change
within a couple of seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from simcluster.extenders import free_port
from simcluster.processes import stop_process
from simcluster.readiness import Awaited, http_ok, wait_ready


def prometheus_missing() -> str:
    """Why a real Prometheus cannot run here ('' when it can)."""
    return "" if shutil.which("prometheus") else "prometheus is not installed (Debian package 'prometheus')"


class Prometheus:
    """A Prometheus process with its config and TSDB under ``root``; ``jobs`` maps job name to host:port targets.
    It is ready once constructed: the wait lasts while the process lives and progresses (``report`` hears it)."""

    def __init__(self, root: Path, jobs: dict[str, list[str]], rule_files: list[Path] = (),
                 report: Callable[[str], None] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = root / "prometheus.yml"
        lines = ["global: {scrape_interval: 1s, evaluation_interval: 1s}"]
        if rule_files:
            lines.append(f"rule_files: {json.dumps([str(p) for p in rule_files])}")
        lines.append("scrape_configs:")
        for job, targets in jobs.items():
            lines.append(f"  - job_name: {job}\n    static_configs: [{{targets: {json.dumps(targets)}}}]")
        config.write_text("\n".join(lines) + "\n")
        self.log = root / "prometheus.log"
        self._log = open(self.log, "wb")  # noqa: SIM115 - the process writes it until stop()
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=subprocess.DEVNULL, stderr=self._log)
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_ready([self.awaited(lambda: http_ok(self.url + "/-/ready"))], "answering /-/ready", report=report)
        except BaseException:
            self.stop()
            raise

    def awaited(self, ready: Callable[[], object], phase: Callable[[], object] | None = None,
                task: str = "") -> Awaited:
        """Something Prometheus is to do, as a wait sees it: its process and its log."""
        return Awaited("Prometheus", ready, self.proc, self.log, phase, task)

    def _api(self, path: str) -> dict:
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as resp:  # a hang guard: busy machines are slow
                doc = json.load(resp)
        except urllib.error.HTTPError as err:
            doc = json.load(err)
        if doc.get("status") != "success":
            raise ValueError(f"{path}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector; ValueError with Prometheus's error for a bad expression."""
        return self._api("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["result"]

    def label_values(self, label: str, match: str) -> list[str]:
        """The values ``label`` takes on the series ``match`` selects (what Grafana's ``label_values()`` lists)."""
        query = urllib.parse.urlencode({"match[]": match})
        return self._api(f"/api/v1/label/{urllib.parse.quote(label)}/values?{query}")

    def alerts(self) -> list[dict]:
        """Active alerts (pending or firing) with their labels and state."""
        return self._api("/api/v1/alerts")["alerts"]

    def targets_up(self) -> tuple[int, int]:
        """(targets up, targets configured)."""
        active = self._api("/api/v1/targets")["activeTargets"]
        return sum(1 for t in active if t.get("health") == "up"), len(active)

    def wait_for_targets(self, report: Callable[[str], None] | None = None) -> None:
        """Until every target has been scraped successfully once, while Prometheus lives and progresses."""
        def all_up() -> bool:
            up, total = self.targets_up()
            return total > 0 and up == total
        wait_ready([self.awaited(all_up, self.targets_up)], "every target it scrapes is up", report=report)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        stop_process(self.proc, 10.0)
        self._log.close()
