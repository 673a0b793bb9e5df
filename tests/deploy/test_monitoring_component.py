"""The monitoring component carries the alert rules and the dashboard exactly as deploy/alerts/ and
deploy/grafana/ hold them, and its PodMonitors scrape ports the pods really name."""

from __future__ import annotations

import importlib.util

import yaml

from manifests import DEPLOY, find, pod_templates


def regenerate_module():
    spec = importlib.util.spec_from_file_location("regenerate", DEPLOY / "components" / "monitoring" / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rules_and_dashboard_are_current():
    module = regenerate_module()
    for name, make in module.FILES.items():
        on_disk = (DEPLOY / "components" / "monitoring" / name).read_text()
        assert on_disk == make(), f"{name} is stale: run python deploy/components/monitoring/regenerate.py"
    rule = yaml.safe_load((DEPLOY / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == yaml.safe_load((DEPLOY / "alerts" / "tessera-rules.yaml").read_text())["groups"]


def test_pod_monitors_scrape_named_ports(rendered):
    objects = rendered["production"]
    pods = pod_templates(objects)
    monitors = [o for o in objects if o["kind"] == "PodMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"tessera-exporter", "tessera-device-plugin", "tessera-extender"}
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        (workload,) = [o for o in objects if o["kind"] in ("Deployment", "DaemonSet")
                       and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()]
        ports = {p["name"] for c in pods[workload["metadata"]["name"]]["containers"] for p in c.get("ports", [])}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in ports, f"{monitor['metadata']['name']}: no port {endpoint['port']}"
            assert endpoint["path"] == "/metrics"
    dashboard = find(objects, "ConfigMap", "tessera-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "tessera-gpus.json" in dashboard["data"]
