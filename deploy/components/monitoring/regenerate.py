"""Write prometheusrule.yaml and grafana-dashboard.yaml from deploy/alerts/ and deploy/grafana/.

kustomize loads files only from inside a kustomization's own folder, so this component carries the
alert rules (as a PrometheusRule) and the dashboard (as a ConfigMap) as its own files, made from
the originals here. tests/deploy/test_monitoring_component.py fails when they differ.

    python deploy/components/monitoring/regenerate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEPLOY = HERE.parents[1]
NAMESPACE = "tessera-system"
HEADER = ("# Made by regenerate.py from deploy/{source}: edit that file and run\n"
          "#   python deploy/components/monitoring/regenerate.py\n")


def prometheus_rule() -> str:
    """The PrometheusRule holding deploy/alerts/tessera-rules.yaml's groups, as YAML text."""
    groups = yaml.safe_load((DEPLOY / "alerts" / "tessera-rules.yaml").read_text())["groups"]
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "tessera", "namespace": NAMESPACE}, "spec": {"groups": groups}}
    return HEADER.format(source="alerts/tessera-rules.yaml") + yaml.safe_dump(doc, sort_keys=False, width=110)


def grafana_dashboard() -> str:
    """The ConfigMap holding deploy/grafana/tessera-gpus.json (label grafana_dashboard for the sidecar)."""
    doc = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "tessera-grafana-dashboard", "namespace": NAMESPACE,
                        "labels": {"grafana_dashboard": "1"}},
           "data": {"tessera-gpus.json": (DEPLOY / "grafana" / "tessera-gpus.json").read_text()}}
    return HEADER.format(source="grafana/tessera-gpus.json") + yaml.safe_dump(doc, sort_keys=False, width=110)


FILES = {"prometheusrule.yaml": prometheus_rule, "grafana-dashboard.yaml": grafana_dashboard}


def main() -> int:
    for name, make in FILES.items():
        (HERE / name).write_text(make())
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
