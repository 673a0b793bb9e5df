"""The Helm chart deploy/chart/tessera: generated from deploy/base by scripts/gen-chart.py (a stale chart
fails), ``helm lint`` clean, and ``helm template`` with default values renders the very objects
``kubectl kustomize deploy`` renders; each value reaches the fields it names."""

from __future__ import annotations

import base64
import filecmp
import json
import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from manifests import OVERLAYS, REPO_ROOT, find, flag, kubectl, pod_templates
from realcluster.helmchart import CHART, HOW_TO_GET, find_helm, key_args, run_helm, without_helm_labels

GENERATED_SUFFIX = re.compile(r"^(.+)-[a-z0-9]{10}$")


@pytest.fixture(scope="module")
def helm():
    found = find_helm()
    if found is None:
        pytest.skip(f"helm is not built: {HOW_TO_GET}")
    return found


def template(helm, tmp_path, deploy_copy, *values: str, webhook_keys: bool = True,
             extra: tuple[str, ...] = ()) -> list[dict]:
    """``helm template`` of the chart with the copy's keys, ``extra`` arguments and ``--set`` ``values``."""
    args = ["template", "tessera", str(CHART), *key_args(deploy_copy / "keys", webhook_keys), *extra]
    for value in values:
        args += ["--set", value]
    done = run_helm(helm, args, tmp_path / "helm-home")
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def comparable(objects: list[dict]) -> dict[tuple[str, str, str], dict]:
    """Objects by kind, namespace and name, less Helm's labels, with generated names' hash suffix dropped
    (kustomize hashes its ConfigMaps' and Secrets' content; the chart hashes the node config its own way)
    config files in ConfigMaps parsed and Secrets' data decoded."""
    renames = {}
    for obj in objects:
        match = GENERATED_SUFFIX.match(obj["metadata"]["name"])
        if obj["kind"] in ("ConfigMap", "Secret") and match:
            renames[obj["metadata"]["name"]] = match.group(1)
    for obj in objects:   # the keys' digest: Helm's own way to restart key readers (kustomize hashes names)
        template = (obj.get("spec") or {}).get("template", {}).get("metadata", {})
        if template.get("annotations", {}).pop("checksum/keys", None) is not None and not template["annotations"]:
            del template["annotations"]
    text = json.dumps([without_helm_labels(obj) for obj in objects])
    for generated, name in renames.items():
        text = text.replace(f'"{generated}"', f'"{name}"')
    objects = json.loads(text)
    for obj in objects:
        if obj["kind"] == "ConfigMap":   # config files compare as what they say (the chart's node config is toYaml's)
            obj["data"] = {k: yaml.safe_load(v) if k.endswith(".yaml") else v for k, v in obj["data"].items()}
        if obj["kind"] == "Secret":      # the bytes, however the base64 is wrapped
            obj["data"] = {k: base64.b64decode(v) for k, v in obj["data"].items()}
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}


def test_the_chart_is_what_gen_chart_writes_from_deploy_base(tmp_path):
    if kubectl() is None:
        pytest.skip("kubectl is not installed: scripts/gen-chart.py renders deploy/base with kubectl kustomize")
    out = tmp_path / "tessera"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "gen-chart.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    compared = filecmp.dircmp(out, CHART)
    stale = [*compared.diff_files, *compared.left_only, *compared.right_only]
    templates = filecmp.dircmp(out / "templates", CHART / "templates")
    stale += [f"templates/{f}" for f in (*templates.diff_files, *templates.left_only, *templates.right_only)]
    assert not stale, f"deploy/chart/tessera is stale ({stale}): run python scripts/gen-chart.py"


def test_helm_lint_is_clean(helm, tmp_path, deploy_copy):
    done = run_helm(helm, ["lint", "--strict", str(CHART), *key_args(deploy_copy / "keys")], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("overlay, values", [("default", ()),
                                             ("production", ("certManager.enabled=true", "monitoring.enabled=true"))])
def test_the_chart_renders_what_kustomize_renders(helm, tmp_path, rendered, deploy_copy, overlay, values):
    """Default values give ``kubectl kustomize deploy``'s objects; cert-manager and monitoring turned on give
    deploy/overlays/production's (which takes the extender's signing pair alone from make-keys.sh)."""
    chart = comparable(template(helm, tmp_path, deploy_copy, *values, webhook_keys=overlay == "default"))
    kustomize = comparable(rendered[overlay])
    assert sorted(chart) == sorted(kustomize)
    for key, obj in kustomize.items():
        assert chart[key] == obj, f"{key}: the chart and deploy/{OVERLAYS[overlay]} differ"


def test_each_value_reaches_its_fields(helm, tmp_path, deploy_copy):
    objects = template(helm, tmp_path, deploy_copy, "extender.policy=binpack", "scheduler.image.tag=v1.36.4",
                       "image.repository=registry.example.com/tessera", "image.tag=0.2.0",
                       "nodeConfig.deviceplugin.default_mode=mps", "devicePlugin.evictOnOveruse=true", "mps.user=2000",
                       "nodeConfig.deviceplugin.timeslice_replicas=8", "gpuNodes.nodeSelector.pool=gpu",
                       "nodeConfigs.a100-mig.deviceplugin.default_mode=mig",
                       "gpuNodes.tolerations[0].key=gpu", "gpuNodes.tolerations[0].operator=Exists",
                       "priorityClassNames.node=tessera-node", "priorityClassNames.controlPlane=tessera-control")
    for obj in objects:
        version = "1.34.0" if obj["apiVersion"].startswith("resource.k8s.io/") else "1.32.0"
        kubernetes_validate.validate(obj, version, strict=True)
    pods = pod_templates(objects)
    extender, scheduler = pods["tessera-extender"]["containers"][0], pods["tessera-scheduler"]["containers"][0]
    assert flag(extender["args"], "policy") == "binpack"
    assert scheduler["image"] == "registry.k8s.io/kube-scheduler:v1.36.4"
    assert extender["image"] == "registry.example.com/tessera:0.2.0"
    plugin = pods["tessera-device-plugin"]
    args = plugin["containers"][0]["args"]
    assert flag(args, "mps-user") == "2000"
    assert not [a for a in args if a.startswith("--default-mode")], "GPU modes are the node config's, not a flag"
    assert "--evict-on-overuse" in args and "--no-evict-on-overuse" not in args
    assert plugin["containers"][1]["securityContext"]["runAsUser"] == 2000
    assert "chown 2000:2000" in plugin["initContainers"][1]["command"][2]
    config_map = find(objects, "ConfigMap", "tessera-node-config")
    assert yaml.safe_load(config_map["data"]["config.yaml"])["deviceplugin"] == {
        "default_mode": "mps", "gpu_modes": {}, "timeslice_replicas": 8}
    # a per-node config: a key beside config.yaml, for nodes labelled tessera.io/node-config=a100-mig
    assert yaml.safe_load(config_map["data"]["a100-mig.yaml"]) == {"deviceplugin": {"default_mode": "mig"}}
    assert sorted(config_map["data"]) == ["a100-mig.yaml", "config.yaml"]
    assert {"name": "node-config", "configMap": {"name": "tessera-node-config"}} in plugin["volumes"]
    for name in ("tessera-device-plugin", "tessera-exporter"):
        assert pods[name]["nodeSelector"] == {"pool": "gpu"}
        assert pods[name]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
        assert pods[name]["priorityClassName"] == "tessera-node"
    assert pods["tessera-dra-plugin"]["nodeSelector"] == {"tessera.io/dra-driver": "true"}
    assert pods["tessera-scheduler"]["priorityClassName"] == "tessera-control"


def test_new_keys_restart_exactly_the_workloads_that_read_them(helm, tmp_path, deploy_copy):
    """kustomize's generated Secret names roll a key's readers; with Helm's stable names, the keys' digest in
    the pod templates does: a changed key changes it for the extender, the device plugin and the second
    scheduler, and for no other workload."""
    def digests(objects: list[dict]) -> dict[str, str | None]:
        return {o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/keys")
                for o in objects if o["kind"] in ("Deployment", "DaemonSet")}

    before = digests(template(helm, tmp_path, deploy_copy))
    other = tmp_path / "other.pub"
    other.write_text((deploy_copy / "keys" / "extender.pub").read_text().replace("A", "B", 1))
    after = digests(template(helm, tmp_path, deploy_copy, extra=("--set-file", f"keys.extenderPub={other}")))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"tessera-extender", "tessera-device-plugin", "tessera-scheduler"}
    assert all(before[name] for name in changed)


@pytest.mark.parametrize("name", ["default", "config", "../etc", "-lead", "a" * 64])
def test_a_per_node_config_whose_name_no_label_can_carry_is_refused(helm, tmp_path, deploy_copy, name):
    done = run_helm(helm, ["template", "tessera", str(CHART), *key_args(deploy_copy / "keys"),
                           "--set-json", json.dumps({"nodeConfigs": {name: {"deviceplugin": {"default_mode": "mig"}}}})],
                    tmp_path / "helm-home")
    assert done.returncode != 0 and f"nodeConfigs.{name}: a per-node config's name" in done.stderr


def test_without_the_keys_the_chart_says_how_to_make_them(helm, tmp_path):
    done = run_helm(helm, ["template", "tessera", str(CHART)], tmp_path)
    assert done.returncode != 0
    assert "make-keys.sh" in done.stderr and "--set-file" in done.stderr
