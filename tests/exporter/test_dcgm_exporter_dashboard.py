"""NVIDIA's dcgm-exporter dashboard shows no empty panel on Tessera; beside dcgm-exporter, no DCGM_* twice.

The dashboard and the default counters are dcgm-exporter's own files, stored unchanged in
``data/dcgm-exporter`` (source, commit and licence in its ``SOURCE.md``). A real Prometheus scrapes
the exporter on a fake H100 node; each panel query runs as Grafana would send it with every
template variable on "All".
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from fakenode import scrape, wait_until
from test_prometheus_scrapes_shared_gpu import shared_gpu_node

DATA = Path(__file__).parent / "data" / "dcgm-exporter"
# What Grafana puts for its built-in interval variables (scrape every 1 s here, Grafana's 15 s default step).
BUILT_IN = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
# default-counters.csv entries Tessera does not serve, and why (exporter/metrics.py says the same)
NOT_SERVED = {"DCGM_FI_DEV_VGPU_LICENSE_STATUS": "vGPU licensing: bare-metal GPUs have none"}


def panels(doc: dict) -> list[dict]:
    """Every panel, those inside rows included."""
    found = []
    for panel in doc.get("panels", []):
        found.append(panel)
        found.extend(panels(panel))
    return found


def regex_escape(value: str) -> str:
    """Grafana's escaping of one multi-value variable value inside a PromQL regex string."""
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def grafana_value(values: list[str]) -> str:
    """A multi-value variable set to "All" with no custom all value: one value as is, more as (a|b)."""
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(expr: str, variables: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return variables[name] if name in variables else BUILT_IN[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", sub, expr)


def dashboard_queries(prom) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """The template variables' values from Prometheus, and (panel title, PromQL) for every panel target."""
    doc = json.loads((DATA / "dcgm-exporter-dashboard.json").read_text())
    values: dict[str, list[str]] = {}
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
            metric, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query).groups()
            values[var["name"]] = prom.label_values(label, metric)
    variables = {name: grafana_value(v) for name, v in values.items() if v}
    return values, [(p["title"], interpolate(t["expr"], variables))
                    for p in panels(doc) for t in p.get("targets", []) if t.get("expr")]


def test_every_panel_of_nvidias_dashboard_returns_series(fake_node, run_exporter, prometheus, recording_api):
    node = shared_gpu_node(fake_node, recording_api)
    url = run_exporter(node, kubeconfig=recording_api.kubeconfig(node.root / "kubeconfig"))
    prom = prometheus([url.removeprefix("http://")])
    wait_until(lambda: prom.query("DCGM_FI_PROF_GR_ENGINE_ACTIVE"), timeout=20,
               what="GPM figures scraped (they need a second collection)")
    values, queries = dashboard_queries(prom)
    assert set(values) == {"instance", "gpu"}
    assert sorted(values["gpu"], key=int) == [str(g.index) for g in node.description.gpus]
    assert len(queries) == 8
    empty = [(title, expr) for title, expr in queries if not prom.query(expr)]
    assert empty == [], empty
    tensor = {r["metric"]["gpu"]: float(r["value"][1]) for r in prom.query("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE")}
    assert tensor["0"] > 0 and tensor["2"] == 0  # GPU 0 is busy (40 %), GPU 2 idle


def default_counters() -> list[tuple[str, str]]:
    """(field, Prometheus type) of every counter dcgm-exporter's default CSV enables."""
    rows = csv.reader(line for line in (DATA / "default-counters.csv").read_text().splitlines()
                      if line.strip() and not line.lstrip().startswith("#"))
    return [(row[0].strip(), row[1].strip()) for row in rows]


def series_line(text: str, name: str, gpu: str) -> str:
    """The exposition line of metric ``name`` on GPU ``gpu``."""
    return next(line for line in text.splitlines() if line.startswith(name + "{") and f'gpu="{gpu}"' in line)


def xid_line(text: str, gpu: str) -> str:
    return series_line(text, "DCGM_FI_DEV_XID_ERRORS", gpu)


def energy(text: str, gpu: str) -> float:
    return float(series_line(text, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", gpu).rsplit(" ", 1)[1])


def test_every_default_counter_nvml_gives_is_served_with_dcgm_exporters_labels(fake_node, run_exporter):
    node = fake_node("h100-80gb-mps.yaml")
    node.faults.set_utilization(1, 60, 20)
    url = run_exporter(node)
    text = wait_until(lambda: (t := scrape(url)) and "DCGM_FI_PROF_DRAM_ACTIVE{" in t and t, what="GPM figures")
    counters = default_counters()
    assert len(counters) > 20, "the CSV parsed"
    labels = [name for name, kind in counters if kind == "label"]
    assert labels == ["DCGM_FI_DRIVER_VERSION"]
    missing = [name for name, kind in counters
               if kind != "label" and name not in NOT_SERVED and f"\n{name}{{" not in text]
    assert missing == []
    assert f'DCGM_FI_DRIVER_VERSION="{node.description.driver_version}"' in text
    assert xid_line(text, "0").endswith(" 0.0") and 'err_code="0",err_msg="No Error"' in xid_line(text, "0")

    def xid_seen() -> str | None:
        node.faults.inject_xid(3, 43)  # again each time: one sent before the exporter listened is lost
        line = xid_line(scrape(url), "3")
        return line if line.endswith(" 43.0") else None
    assert 'err_code="43",err_msg="GPU stopped processing"' in wait_until(xid_seen, what="an Xid seen")
    first = energy(text, "1")
    assert first > 0
    wait_until(lambda: energy(scrape(url), "1") > first, what="the energy counter growing")


def test_beside_dcgm_exporter_tessera_serves_no_dcgm_series_and_joins_on_uuid(fake_node, run_exporter, prometheus,
                                                                              recording_api):
    node = shared_gpu_node(fake_node, recording_api)
    kubeconfig = recording_api.kubeconfig(node.root / "kubeconfig")
    tessera = run_exporter(node, kubeconfig=kubeconfig, args=["--no-dcgm-series"])
    # dcgm-exporter's stand-in on the same node: an exporter with the DCGM_* series on (the default)
    dcgm = run_exporter(node, kubeconfig=kubeconfig, log_name="dcgm-standin.log")
    text = scrape(tessera)
    assert "tessera_gpu_health{" in text and "tessera_container_gpu_memory_used_bytes{" in text
    assert "DCGM_" not in text
    prom = prometheus([tessera.removeprefix("http://")], {"dcgm-exporter": [dcgm.removeprefix("http://")]})
    wait_until(lambda: len(prom.query("up == 1")) == 2, timeout=20, what="both exporters scraped")
    assert prom.query('{__name__=~"DCGM_.+", job="tessera-exporter"}') == []
    twice = prom.query('count by (__name__, UUID) ({__name__=~"DCGM_FI_DEV_GPU_TEMP|DCGM_FI_DEV_FB_USED"}) > 1')
    assert twice == []
    joined = prom.query('sum by (pod, modelName) (tessera_container_gpu_memory_used_bytes{job="tessera-exporter"}'
                        ' * on (UUID) group_left (modelName) DCGM_FI_DEV_GPU_TEMP{job="dcgm-exporter"} * 0 + 1)')
    assert {(r["metric"]["pod"], r["metric"]["modelName"]) for r in joined} == {
        ("train-a", "NVIDIA H100 80GB HBM3"), ("train-b", "NVIDIA H100 80GB HBM3"), ("solo", "NVIDIA H100 80GB HBM3")}
