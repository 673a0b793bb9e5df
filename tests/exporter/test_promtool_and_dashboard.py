"""promtool accepts the exporter's output and the alert rules; every dashboard query runs on real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from dataclasses import asdict
from types import SimpleNamespace

import pytest

from exporter.collector import render
from exporter.events import NoEvents
from exporter.overuse import OveruseTracker
from exporter.podresources import PodResourcesClient
from exporter.poller import Poller
from exporter.records import RecordReader
from exporter.server import MetricsPage
from exporter.settings import ExporterSettings
from fakenode import REPO, scrape, wait_until
from test_prometheus_scrapes_shared_gpu import shared_gpu_node
from tessera.config import ExporterConfig
from tessera.fakenvml import uninstall
from tessera.nvml import Nvml

ALERTS = REPO / "deploy" / "alerts"
DASHBOARD = REPO / "deploy" / "grafana" / "tessera-gpus.json"
CAMEL_CASE = "label names should be written in 'snake_case' not 'camelCase'"
# dcgm-exporter's own name for the PCIe replay counter, kept so its dashboards and alerts find it
REPLAY_NAME = "DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter'"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian package 'prometheus')")


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60)


def families(text: str, keep) -> str:
    """The exposition blocks (HELP, TYPE, samples) of the metric families whose name ``keep`` accepts."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("# HELP ") and current:
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    return "".join("\n".join(b) + "\n" for b in blocks if b and keep(b[0].split()[2]))


@needs_promtool
def test_promtool_check_metrics_finds_nothing_but_dcgm_exporters_own_camel_case(fake_node, run_exporter,
                                                                                 recording_api):
    node = shared_gpu_node(fake_node, recording_api)
    url = run_exporter(node)
    text = wait_until(lambda: (t := scrape(url)) and "DCGM_FI_PROF_GR_ENGINE_ACTIVE{" in t and t,
                      what="GPM figures (from the second collection on)")
    assert "DCGM_FI_DEV_FB_USED{" in text and "tessera_container_gpu_memory_used_bytes{" in text
    tessera = promtool("check", "metrics", stdin=families(text, lambda n: not n.startswith("DCGM_")))
    assert tessera.returncode == 0, tessera.stdout + tessera.stderr
    everything = promtool("check", "metrics", stdin=text)
    problems = [p for p in (everything.stdout + everything.stderr).splitlines() if p.strip()]
    assert problems, "modelName is camelCase: promtool must say so, else this check is not running"
    for problem in problems:  # only dcgm-exporter's modelName label and its replay counter's name
        assert problem == REPLAY_NAME or (problem.startswith("DCGM_FI_") and problem.endswith(CAMEL_CASE)), problem
    assert any(p.startswith("DCGM_FI_PROF_GR_ENGINE_ACTIVE") for p in problems), "GPM series are checked too"


@needs_promtool
def test_with_dcgm_compatible_labels_off_promtool_finds_only_dcgm_exporters_replay_counter_name(fake_node, recording_api, monkeypatch):
    """The switch off serves model_name for modelName; the collection runs in this process, as in the daemon."""
    node = shared_gpu_node(fake_node, recording_api)
    monkeypatch.setenv("TESSERA_FAKE_NVML", node.description_path)
    nvml = Nvml().open()
    poller = Poller(nvml, PodResourcesClient(node.socket), RecordReader(node.state_dir),
                    OveruseTracker(NoEvents(), node.overuse_dir), hostname=node.description.node, interval_s=1.0,
                    proc_root=str(node.proc_root))
    try:
        poller.collect()
        snapshot = poller.collect()  # GPM figures need a second collection
    finally:
        nvml.close()
        uninstall()
    settings = ExporterSettings.from_config(SimpleNamespace(**{**asdict(ExporterConfig()),
                                                               "dcgm_compatible_labels": False}))
    page = MetricsPage(max_age_s=10, dcgm_compatible_labels=settings.dcgm_compatible_labels)
    page.publish(snapshot)
    text = page.body(gzipped=False).decode()
    for series in ("DCGM_FI_DEV_FB_USED{", "DCGM_FI_PROF_GR_ENGINE_ACTIVE{", "tessera_container_gpu_utilization_ratio{"):
        assert series in text
    assert 'model_name="NVIDIA H100 80GB HBM3"' in text and "modelName" not in text
    check = promtool("check", "metrics", stdin=text)
    problems = [p for p in (check.stdout + check.stderr).splitlines() if p.strip()]
    assert problems == [REPLAY_NAME], problems  # nothing but a name dcgm-exporter chose
    clean = promtool("check", "metrics", stdin=families(text, lambda n: n != "DCGM_FI_DEV_PCIE_REPLAY_COUNTER"))
    assert clean.returncode == 0 and not (clean.stdout + clean.stderr).strip(), clean.stdout + clean.stderr
    default = render(snapshot)  # the default keeps dcgm-exporter's label
    assert 'modelName="NVIDIA H100 80GB HBM3"' in default.decode()
    assert ExporterSettings.from_config(ExporterConfig()).dcgm_compatible_labels is True


@needs_promtool
def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    check = promtool("check", "rules", "tessera-rules.yaml", cwd=ALERTS)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout
    tests = promtool("test", "rules", "tessera-rules.test.yaml", cwd=ALERTS)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    rules = [r["alert"] for g in __import__("yaml").safe_load((ALERTS / "tessera-rules.yaml").read_text())["groups"]
             for r in g["rules"]]
    tested = {t["alertname"] for case in __import__("yaml").safe_load(
        (ALERTS / "tessera-rules.test.yaml").read_text())["tests"] for t in case["alert_rule_test"]}
    assert tested == set(rules), "every alert has a unit test"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel target and template variable, Grafana variables replaced."""
    doc = json.loads(DASHBOARD.read_text())
    found = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
            found.append((f"${var['name']}", m.group(1)))
    return [(title, re.sub(r"\$\{?\w+\}?", ".*", expr)) for title, expr in found]


def test_every_dashboard_query_runs_on_prometheus(fake_node, run_exporter, prometheus, recording_api):
    node = shared_gpu_node(fake_node, recording_api)
    node.faults.set_processes(2, [(4999, 1000)], mps=True)  # a process no container claims
    url = run_exporter(node, kubeconfig=recording_api.kubeconfig(node.root / "kubeconfig"))
    prom = prometheus([url.removeprefix("http://")])
    wait_until(lambda: prom.query("rate(tessera_exporter_collections_total[1m])"), timeout=20,
               what="two scrapes (rate() needs two samples)")
    queries = dashboard_queries()
    assert len(queries) >= 25
    empty = {title for title, expr in queries if not prom.query(expr)}
    # nothing went wrong on this node, and it has no MIG: these panels are rightly empty
    assert empty == {"Xid errors (5m)", "MIG instance memory used", "Memory over grant"}
