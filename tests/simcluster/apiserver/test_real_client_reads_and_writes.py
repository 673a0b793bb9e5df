"""The real ``kubernetes`` client creates, lists, patches, binds and deletes as against a real cluster."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from apiserver_helpers import node, pod


def test_namespaces_default_and_kube_system_exist_at_start(core):
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_create_sets_metadata_and_pod_defaults(core):
    body = pod("web")
    body["status"] = {"phase": "Running"}  # a client cannot choose a new pod's status
    created = core.create_namespaced_pod("default", body)
    assert created.kind == "Pod" and created.api_version == "v1"
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp is not None and meta.namespace == "default"
    assert int(meta.resource_version) > 0 and meta.generation == 1
    assert created.status.phase == "Pending"
    assert created.spec.scheduler_name == "default-scheduler"


def test_resource_versions_increase_across_kinds(core):
    a = core.create_namespaced_pod("default", pod("a"))
    n = core.create_node(node("n1"))
    b = core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"k": "v"}})
    rvs = [int(a.metadata.resource_version), int(n.metadata.resource_version), int(b.metadata.resource_version)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    listed = core.list_namespaced_pod("default")
    assert int(listed.metadata.resource_version) >= rvs[-1]


def test_generate_name_gets_a_suffix(core):
    body = pod("ignored")
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "job-"
    created = core.create_namespaced_pod("default", body)
    assert created.metadata.name.startswith("job-") and len(created.metadata.name) == len("job-") + 5


def test_create_existing_name_is_already_exists(core):
    core.create_namespaced_pod("default", pod("dup"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod("dup"))
    assert err.value.status == 409
    status = json.loads(err.value.body)
    assert status["reason"] == "AlreadyExists" and status["message"] == 'pods "dup" already exists'


def test_label_and_field_selectors_filter_lists(core):
    core.create_namespaced_pod("default", pod("a", labels={"app": "web", "tier": "front"}))
    core.create_namespaced_pod("default", pod("b", labels={"app": "web", "tier": "back"}))
    core.create_namespaced_pod("default", pod("c", labels={"app": "db"}))
    names = lambda r: sorted(p.metadata.name for p in r.items)  # noqa: E731
    assert names(core.list_namespaced_pod("default", label_selector="app=web")) == ["a", "b"]
    assert names(core.list_namespaced_pod("default", label_selector="app==web,tier!=front")) == ["b"]
    assert names(core.list_namespaced_pod("default", label_selector="tier in (front,back)")) == ["a", "b"]
    assert names(core.list_namespaced_pod("default", label_selector="app notin (web)")) == ["c"]
    assert names(core.list_namespaced_pod("default", label_selector="tier")) == ["a", "b"]
    assert names(core.list_namespaced_pod("default", label_selector="!tier")) == ["c"]
    assert names(core.list_pod_for_all_namespaces(field_selector="metadata.name=b")) == ["b"]
    assert names(core.list_pod_for_all_namespaces(field_selector="status.phase=Pending,metadata.namespace==default")) == ["a", "b", "c"]
    assert names(core.list_pod_for_all_namespaces(field_selector="metadata.name!=b")) == ["a", "c"]


def test_pods_by_node_name_and_unbound(core):
    core.create_node(node("n1"))
    for i in range(4):
        core.create_namespaced_pod("default", pod(f"p{i}"))
    for i in (0, 2):
        core.create_namespaced_binding("default", client.V1Binding(
            metadata=client.V1ObjectMeta(name=f"p{i}"), target=client.V1ObjectReference(kind="Node", name="n1")),
            _preload_content=False)
    on_n1 = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert sorted(p.metadata.name for p in on_n1.items) == ["p0", "p2"]
    unbound = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=")
    assert sorted(p.metadata.name for p in unbound.items) == ["p1", "p3"]


def test_limit_and_continue_page_through_everything(core):
    for i in range(7):
        core.create_namespaced_pod("default", pod(f"p{i}"))
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_pod("default", limit=3, _continue=token)
        seen += [p.metadata.name for p in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)
    assert seen == [f"p{i}" for i in range(7)] and pages == 3


def test_each_patch_type(core):
    core.create_namespaced_pod("default", pod("p", labels={"a": "1"}))
    merged = core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"b": "2", "a": None}}},
                                       _content_type="application/merge-patch+json")
    assert merged.metadata.labels == {"b": "2"}
    strategic = core.patch_namespaced_pod("p", "default", {"metadata": {"annotations": {"x": "y"}}})
    assert strategic.metadata.annotations == {"x": "y"} and strategic.metadata.labels == {"b": "2"}
    jp = core.patch_namespaced_pod("p", "default", [{"op": "add", "path": "/metadata/labels/c", "value": "3"}])
    assert jp.metadata.labels == {"b": "2", "c": "3"}
    assert int(jp.metadata.resource_version) > int(merged.metadata.resource_version)


def test_strategic_merge_patch_merges_containers_by_name(core):
    body = pod("p")
    body["spec"]["containers"].append({"name": "side", "image": "envoy:1"})
    core.create_namespaced_pod("default", body)
    patched = core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "side", "image": "envoy:2"}]}})
    assert [(c.name, c.image) for c in patched.spec.containers] == [("main", "busybox:1.36"), ("side", "envoy:2")]


def test_strategic_patch_of_node_status_conditions_by_type(core):
    core.create_node(node("n1"))
    core.patch_node_status("n1", {"status": {"conditions": [{"type": "MemoryPressure", "status": "False"}]}})
    got = core.read_node("n1")
    assert {c.type: c.status for c in got.status.conditions} == {"Ready": "True", "MemoryPressure": "False"}
    core.patch_node_status("n1", {"status": {"conditions": [{"type": "Ready", "$patch": "delete"}]}})
    assert [c.type for c in core.read_node("n1").status.conditions] == ["MemoryPressure"]


def test_stale_write_is_conflict(core):
    first = core.create_namespaced_pod("default", pod("p"))
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"v": "2"}}})
    first.metadata.labels = {"v": "stale"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_pod("p", "default", first)
    status = json.loads(err.value.body)
    assert err.value.status == 409 and status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on pods "p": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("p", "default", {"metadata": {"resourceVersion": first.metadata.resource_version,
                                                                "labels": {"v": "3"}}})
    assert err.value.status == 409
    assert core.read_namespaced_pod("p", "default").metadata.labels == {"v": "2"}


def test_status_subresource_keeps_spec_and_main_resource_keeps_status(core):
    core.create_namespaced_pod("default", pod("p"))
    core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running", "podIP": "10.1.2.3"},
                                                      "spec": {"nodeName": "sneaky"}})
    got = core.read_namespaced_pod("p", "default")
    assert got.status.phase == "Running" and got.spec.node_name is None
    core.patch_namespaced_pod("p", "default", {"status": {"phase": "Failed"}, "metadata": {"labels": {"k": "v"}}})
    assert core.read_namespaced_pod("p", "default").status.phase == "Running"


def test_generation_bumps_on_spec_change_only(core):
    core.create_namespaced_pod("default", pod("p"))
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"k": "v"}}})
    assert core.read_namespaced_pod("p", "default").metadata.generation == 1
    core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}})
    assert core.read_namespaced_pod("p", "default").metadata.generation == 2


def test_pod_spec_is_immutable_except_image(core):
    core.create_namespaced_pod("default", pod("p"))
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("p", "default", {"spec": {"nodeName": "n1"}})
    assert err.value.status == 422 and "pod updates may not change fields" in json.loads(err.value.body)["message"]


def test_binding_sets_node_and_condition_and_refuses_a_second(core):
    core.create_node(node("n1"))
    core.create_namespaced_pod("default", pod("p"))
    target = client.V1ObjectReference(kind="Node", name="n1")
    resp = core.create_namespaced_binding(
        "default", client.V1Binding(metadata=client.V1ObjectMeta(name="p"), target=target), _preload_content=False)
    assert resp.status == 201 and json.loads(resp.data)["status"] == "Success"
    got = core.read_namespaced_pod("p", "default")
    assert got.spec.node_name == "n1"
    assert [(c.type, c.status) for c in got.status.conditions] == [("PodScheduled", "True")]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_binding(
            "p", "default", client.V1Binding(metadata=client.V1ObjectMeta(name="p"),
                                             target=client.V1ObjectReference(kind="Node", name="n2")),
            _preload_content=False)
    assert err.value.status == 409
    assert json.loads(err.value.body)["message"] == (
        'Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to node "n1"')


def test_graceful_delete_of_bound_pod_then_confirmation(core):
    core.create_node(node("n1"))
    core.create_namespaced_pod("default", pod("p", nodeName="n1"))
    first = core.delete_namespaced_pod("p", "default")
    assert first.metadata.deletion_timestamp is not None and first.metadata.deletion_grace_period_seconds == 30
    assert core.read_namespaced_pod("p", "default").metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("p", "default", grace_period_seconds=0)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("p", "default")
    assert err.value.status == 404


def test_unbound_pod_goes_at_once(core):
    core.create_namespaced_pod("default", pod("p"))
    core.delete_namespaced_pod("p", "default")
    assert core.list_namespaced_pod("default").items == []


def test_eviction_deletes_gracefully(core):
    core.create_namespaced_pod("default", pod("p", nodeName="n1"))
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name="p", namespace="default"))
    core.create_namespaced_pod_eviction("p", "default", body)
    assert core.read_namespaced_pod("p", "default").metadata.deletion_timestamp is not None


def test_leases_with_coordination_api(api_client):
    coord = client.CoordinationV1Api(api_client)
    lease = coord.create_namespaced_lease("kube-system", client.V1Lease(
        metadata=client.V1ObjectMeta(name="tessera-extender"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15)))
    lease.spec.holder_identity = "b"
    updated = coord.replace_namespaced_lease("tessera-extender", "kube-system", lease)
    assert updated.spec.holder_identity == "b"
    lease.spec.holder_identity = "c"  # stale: still carries the first resourceVersion
    with pytest.raises(ApiException) as err:
        coord.replace_namespaced_lease("tessera-extender", "kube-system", lease)
    assert err.value.status == 409


def test_kubeconfig_loads_in_the_python_client(server, tmp_path):
    from kubernetes import config

    path = server.write_kubeconfig(tmp_path / "kubeconfig")
    api = config.new_client_from_config(config_file=str(path))
    assert any(ns.metadata.name == "default" for ns in client.CoreV1Api(api).list_namespace().items)
