"""The embedded API server (simcluster.apiserver) answers as kube-apiserver v1.37.2 does, on what Tessera's
daemons, tests and demo use: create/get/list/watch with resume and 410 Gone, every patch type, bindings,
the status subresource, conflicts, field selectors, OpenAPI with kubectl apply, content types and the
wording of errors. Each check runs against both servers (``[embedded]`` and ``[real]``), so a
difference shows as one failing case; the error checks compare the two servers' Status bodies directly.
What differs by design is listed in the README ("Where the embedded API server differs from
kube-apiserver"). The real server runs without kubelets and without Tessera: only the API is compared.
"""

from __future__ import annotations

import itertools

import pytest
import yaml

from realtier import binaries_or_skip
from refusals import REFUSALS, WORDED_OTHERWISE
from tessera.kube import pod_event
from twoservers import (CONFIGMAPS, EVENTS, JSON, LEASES, PODS, SECRETS, Server, configmap, embedded_api, pod,
                        real_api, status_of, yaml_docs)

_names = itertools.count()
HISTORY = 16   # the embedded server's watch history per resource, short so that a 410 is reachable


def fresh(stem: str) -> str:
    """A name no other check of this module uses (both servers share the module's order of names)."""
    return f"{stem}-{next(_names)}"


@pytest.fixture(scope="module")
def embedded_server():
    """The embedded API server alone, with the short watch history that makes a 410 reachable."""
    with embedded_api(history_size=HISTORY) as server:
        yield server


@pytest.fixture(scope="module")
def real_server():
    """kube-apiserver with etcd, the controller-manager and kube-scheduler; no kubelets, no Tessera."""
    with real_api(binaries_or_skip()) as server:
        yield server


@pytest.fixture(params=["embedded", "real"])
def server(request) -> Server:
    """Each check once per server."""
    return request.getfixturevalue(f"{request.param}_server")


README_LIST = "README, The embedded cluster: Where the embedded API server differs from kube-apiserver"


def differs_by_design(request, server: Server, why: str) -> None:
    """This check is expected to fail on the embedded server (strictly: it fails the day the difference
    goes), for a difference the README lists."""
    if server.name == "embedded":
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=f"{why} ({README_LIST})"))


def _create(server: Server, path: str, obj: dict) -> dict:
    reply = server.request("POST", path, obj)
    assert reply.status == 201, reply.raw
    return reply.body


# --- create, get, list ------------------------------------------------------------------------------------


def test_create_then_get_returns_the_stored_object(server):
    name = fresh("cm")
    made = _create(server, CONFIGMAPS, configmap(name))
    assert made["metadata"]["uid"] and made["metadata"]["creationTimestamp"]
    got = server.request("GET", f"{CONFIGMAPS}/{name}")
    assert got.status == 200 and got.content_type == JSON
    assert got.body["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    assert (got.body["kind"], got.body["apiVersion"], got.body["data"]) == ("ConfigMap", "v1", {"k": "v"})


def test_generate_name_and_dry_run(server):
    stem = fresh("gen") + "-"
    generated = _create(server, CONFIGMAPS, {**configmap(""), "metadata": {"generateName": stem}})
    name = generated["metadata"]["name"]
    assert name.startswith(stem) and len(name) == len(stem) + 5
    dry = server.request("POST", CONFIGMAPS, configmap(fresh("dry")), query={"dryRun": "All"})
    assert dry.status == 201 and dry.body["metadata"]["uid"]
    assert server.request("GET", f"{CONFIGMAPS}/{dry.body['metadata']['name']}").status == 404


def test_list_is_a_typed_list_with_a_resource_version_and_selects_by_label(server):
    name = fresh("cm")
    labelled = configmap(name)
    labelled["metadata"]["labels"] = {"pick": name}
    _create(server, CONFIGMAPS, labelled)
    listed = server.request("GET", CONFIGMAPS, query={"labelSelector": f"pick={name}"}).body
    assert (listed["kind"], listed["apiVersion"]) == ("ConfigMapList", "v1")
    assert int(listed["metadata"]["resourceVersion"]) > 0
    assert [i["metadata"]["name"] for i in listed["items"]] == [name]


def test_namespaces_are_created_and_deleted_by_an_admin(server, request):
    differs_by_design(request, server, "a namespace is deleted at once with its objects, never Terminating")
    name = fresh("ns")
    made = _create(server, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": name}})
    assert made["status"]["phase"] == "Active"
    assert "kubernetes" in made["spec"].get("finalizers", [])
    gone = server.request("DELETE", f"/api/v1/namespaces/{name}")
    assert gone.status == 200 and gone.body["status"]["phase"] == "Terminating"


def test_list_pages_with_limit_and_continue(server):
    stem = fresh("page")
    for index in range(3):
        labelled = configmap(f"{stem}-{index}")
        labelled["metadata"]["labels"] = {"page": stem}
        _create(server, CONFIGMAPS, labelled)
    query = {"labelSelector": f"page={stem}", "limit": 2}
    first = server.request("GET", CONFIGMAPS, query=query).body
    assert [i["metadata"]["name"] for i in first["items"]] == [f"{stem}-0", f"{stem}-1"]
    assert first["metadata"]["continue"]
    rest = server.request("GET", CONFIGMAPS, query={**query, "continue": first["metadata"]["continue"]}).body
    assert [i["metadata"]["name"] for i in rest["items"]] == [f"{stem}-2"]
    assert not rest["metadata"].get("continue")
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


# --- field selectors --------------------------------------------------------------------------------------


def test_field_selectors_on_node_name_and_name(server):
    here, there = fresh("fs"), fresh("fs")
    node = fresh("node")
    _create(server, PODS, pod(here, node=node))
    _create(server, PODS, pod(there))
    on_node = server.request("GET", PODS, query={"fieldSelector": f"spec.nodeName={node}"}).body
    assert [p["metadata"]["name"] for p in on_node["items"]] == [here]
    by_name = server.request("GET", PODS, query={"fieldSelector": f"metadata.name={there}"}).body
    assert [p["metadata"]["name"] for p in by_name["items"]] == [there]
    unbound = server.request("GET", PODS, query={"fieldSelector": "spec.nodeName=,metadata.name=" + there}).body
    assert [p["metadata"]["name"] for p in unbound["items"]] == [there]


# --- watch ------------------------------------------------------------------------------------------------


def test_watch_resumes_after_a_resource_version(server):
    name = fresh("w")
    start = server.request("GET", CONFIGMAPS).body["metadata"]["resourceVersion"]
    made = _create(server, CONFIGMAPS, configmap(name))
    changed = server.request("PUT", f"{CONFIGMAPS}/{name}", {**made, "data": {"k": "v2"}}).body
    assert server.request("DELETE", f"{CONFIGMAPS}/{name}").status == 200
    selector = {"fieldSelector": f"metadata.name={name}"}
    events = server.watch(CONFIGMAPS, {**selector, "resourceVersion": start}, until=3)
    assert [(e["type"], e["object"]["data"]["k"]) for e in events] == [
        ("ADDED", "v"), ("MODIFIED", "v2"), ("DELETED", "v2")]
    resumed = server.watch(CONFIGMAPS, {**selector, "resourceVersion": changed["metadata"]["resourceVersion"]},
                           until=1)
    assert [e["type"] for e in resumed] == ["DELETED"]


def test_a_selector_watch_sees_a_pod_enter_and_leave_its_selection(server):
    """What a kubelet's watch on ``spec.nodeName`` sees: a pod bound to its node is ADDED (not
    MODIFIED), and a labelled pod that loses its label is DELETED from a label-selector watch."""
    name, node = fresh("sel"), fresh("node")
    start = server.request("GET", PODS).body["metadata"]["resourceVersion"]
    _create(server, PODS, pod(name, labels={"watched": name}))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
               "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    assert server.request("POST", f"{PODS}/{name}/binding", binding).status == 201
    unlabel = server.request("PATCH", f"{PODS}/{name}", {"metadata": {"labels": {"watched": None}}},
                             content_type="application/merge-patch+json")
    assert unlabel.status == 200
    on_node = server.watch(PODS, {"fieldSelector": f"spec.nodeName={node}", "resourceVersion": start}, until=2)
    assert [(e["type"], e["object"]["spec"].get("nodeName")) for e in on_node] == [("ADDED", node),
                                                                                   ("MODIFIED", node)]
    labelled = server.watch(PODS, {"labelSelector": f"watched={name}", "resourceVersion": start}, until=3)
    assert [(e["type"], e["object"]["metadata"].get("labels", {}).get("watched")) for e in labelled] == [
        ("ADDED", name), ("MODIFIED", name), ("DELETED", name)]   # DELETED carries the last state that matched


def test_watch_from_a_too_old_resource_version_gets_410_expired(server):
    for _ in range(HISTORY):   # two events each: beyond the embedded server's history
        name = fresh("churn")
        _create(server, SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}})
        assert server.request("DELETE", f"{SECRETS}/{name}").status == 200
    server.forget_history()
    events = server.watch(SECRETS, {"resourceVersion": "1"}, until=1)
    assert [e["type"] for e in events] == ["ERROR"]
    status = events[0]["object"]
    # What client-go's reflector reads to relist (apierrors.IsResourceExpired / IsGone); the wording is the
    # watch cache's ("too old resource version: 1 (N)") or etcd's ("... the provided watch is too old.").
    assert (status["kind"], status["status"], status["code"], status["reason"]) == ("Status", "Failure", 410,
                                                                                    "Expired")
    assert "too old" in status["message"].lower()


# --- patches ----------------------------------------------------------------------------------------------


def test_json_patch(server):
    name = fresh("jp")
    _create(server, CONFIGMAPS, configmap(name))
    ops = [{"op": "add", "path": "/data/extra", "value": "x"}, {"op": "remove", "path": "/data/k"}]
    patched = server.request("PATCH", f"{CONFIGMAPS}/{name}", ops, content_type="application/json-patch+json")
    assert patched.status == 200 and patched.body["data"] == {"extra": "x"}


def test_merge_patch_removes_a_key_with_null(server):
    name = fresh("mp")
    _create(server, CONFIGMAPS, configmap(name, {"a": "1", "b": "2"}))
    patched = server.request("PATCH", f"{CONFIGMAPS}/{name}", {"data": {"a": None, "c": "3"}},
                             content_type="application/merge-patch+json")
    assert patched.status == 200 and patched.body["data"] == {"b": "2", "c": "3"}


def test_strategic_merge_patch_merges_containers_by_name(server):
    name = fresh("smp")
    _create(server, PODS, pod(name))
    patch = {"metadata": {"labels": {"merged": "yes"}},
             "spec": {"containers": [{"name": "side", "image": "busybox:1.36"}]}}
    patched = server.request("PATCH", f"{PODS}/{name}", patch, content_type="application/strategic-merge-patch+json")
    assert patched.status == 200, patched.raw
    images = {c["name"]: c["image"] for c in patched.body["spec"]["containers"]}
    assert images == {"main": "busybox", "side": "busybox:1.36"}
    assert patched.body["metadata"]["labels"] == {"merged": "yes"}


def test_server_side_apply_creates_records_the_manager_and_refuses_a_conflict(server, request):
    differs_by_design(request, server, "no server-side apply: application/apply-patch+yaml is a 415")
    name = fresh("ssa")
    applied = server.request("PATCH", f"{CONFIGMAPS}/{name}", configmap(name, {"k": "one"}),
                             content_type="application/apply-patch+yaml", query={"fieldManager": "first"})
    assert applied.status == 201, applied.raw
    managers = [(m["manager"], m["operation"]) for m in applied.body["metadata"]["managedFields"]]
    assert managers == [("first", "Apply")]
    clash = server.request("PATCH", f"{CONFIGMAPS}/{name}", configmap(name, {"k": "two"}),
                           content_type="application/apply-patch+yaml", query={"fieldManager": "second"})
    assert (clash.status, clash.body["reason"]) == (409, "Conflict")
    assert clash.body["message"] == 'Apply failed with 1 conflict: conflict with "first": .data.k'
    forced = server.request("PATCH", f"{CONFIGMAPS}/{name}", configmap(name, {"k": "two"}),
                            content_type="application/apply-patch+yaml",
                            query={"fieldManager": "second", "force": "true"})
    assert forced.status == 200 and forced.body["data"] == {"k": "two"}
    if server.kubectl_path:
        manifest = yaml.safe_dump(configmap(name, {"k": "three"}))
        by_kubectl = server.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest)
        assert (by_kubectl.returncode, by_kubectl.stdout.strip()) == (0, f"configmap/{name} serverside-applied"), \
            by_kubectl.stderr


# --- bindings and status ----------------------------------------------------------------------------------


def test_binding_sets_the_node_once(server):
    name, node = fresh("bind"), fresh("node")
    _create(server, PODS, pod(name))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
               "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    bound = server.request("POST", f"{PODS}/{name}/binding", binding)
    assert (bound.status, bound.body["kind"], bound.body["status"]) == (201, "Status", "Success")
    assert server.request("GET", f"{PODS}/{name}").body["spec"]["nodeName"] == node
    again = server.request("POST", f"{PODS}/{name}/binding", {**binding, "target": {**binding["target"],
                                                                                    "name": "other"}})
    assert (again.status, again.body["reason"]) == (409, "Conflict")
    assert again.body["message"] == (f'Operation cannot be fulfilled on pods/binding "{name}": '
                                     f'pod {name} is already assigned to node "{node}"')


def test_status_subresource_writes_only_status(server):
    name = fresh("st")
    made = _create(server, PODS, pod(name))
    made["status"] = {"phase": "Running", "message": "from status"}
    made["spec"]["activeDeadlineSeconds"] = 30
    updated = server.request("PUT", f"{PODS}/{name}/status", made)
    assert updated.status == 200, updated.raw
    assert (updated.body["status"]["phase"], updated.body["status"]["message"]) == ("Running", "from status")
    assert "activeDeadlineSeconds" not in updated.body["spec"]
    relabel = {**updated.body, "status": {"phase": "Failed"}}
    relabel["metadata"] = {**updated.body["metadata"], "labels": {"main": "put"}}
    main = server.request("PUT", f"{PODS}/{name}", relabel)
    assert main.status == 200, main.raw
    assert (main.body["status"]["phase"], main.body["metadata"]["labels"]) == ("Running", {"main": "put"})
    patched = server.request("PATCH", f"{PODS}/{name}/status", {"status": {"message": "patched"}},
                             content_type="application/merge-patch+json")
    assert patched.status == 200 and patched.body["status"]["message"] == "patched"


# --- conflicts --------------------------------------------------------------------------------------------


def test_update_with_a_stale_resource_version_is_a_409_conflict(server):
    name = fresh("cf")
    made = _create(server, CONFIGMAPS, configmap(name))
    assert server.request("PUT", f"{CONFIGMAPS}/{name}", {**made, "data": {"k": "new"}}).status == 200
    stale = server.request("PUT", f"{CONFIGMAPS}/{name}", {**made, "data": {"k": "stale"}})
    assert status_of(stale) == {
        "status": "Failure", "code": 409, "reason": "Conflict",
        "message": f'Operation cannot be fulfilled on configmaps "{name}": the object has been modified; '
                   "please apply your changes to the latest version and try again",
        "details": {"name": name, "kind": "configmaps"}}


def test_creating_an_existing_name_is_a_409_already_exists(server):
    name = fresh("ae")
    _create(server, CONFIGMAPS, configmap(name))
    again = server.request("POST", CONFIGMAPS, configmap(name))
    assert status_of(again) == {"status": "Failure", "code": 409, "reason": "AlreadyExists",
                                "message": f'configmaps "{name}" already exists',
                                "details": {"name": name, "kind": "configmaps"}}


def test_lease_taken_with_a_stale_resource_version_is_a_409_naming_the_group(server):
    leases = LEASES
    name = fresh("lease")
    made = _create(server, leases, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                    "metadata": {"name": name},
                                    "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})
    renewed = server.request("PUT", f"{leases}/{name}", {**made, "spec": {**made["spec"], "leaseDurationSeconds": 20}})
    assert renewed.status == 200 and renewed.body["metadata"]["resourceVersion"] != made["metadata"]["resourceVersion"]
    taken = server.request("PUT", f"{leases}/{name}", {**made, "spec": {**made["spec"], "holderIdentity": "b"}})
    assert status_of(taken) == {
        "status": "Failure", "code": 409, "reason": "Conflict",
        "message": f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": the object has been '
                   "modified; please apply your changes to the latest version and try again",
        "details": {"name": name, "group": "coordination.k8s.io", "kind": "leases"}}


def test_times_come_back_in_utc(server, request):
    differs_by_design(request, server, "times are kept as written, not turned to UTC")
    lease = _create(server, LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                     "metadata": {"name": fresh("utc")},
                                     "spec": {"holderIdentity": "a", "renewTime": "2026-01-01T00:30:00.123456+01:00"}})
    assert lease["spec"]["renewTime"] == "2025-12-31T23:30:00.123456Z"


def test_tessera_pod_events_are_stored_and_selected_by_involved_object(server):
    name = fresh("ev")
    event = pod_event("default", name, "", "Warning", "Checked", "a message", "tessera-diff", "host")
    _create(server, EVENTS, event)
    listed = server.request("GET", EVENTS,
                            query={"fieldSelector": f"involvedObject.name={name},reason=Checked"}).body
    assert [(e["reason"], e["message"], e["source"]["component"]) for e in listed["items"]] == [
        ("Checked", "a message", "tessera-diff")]


# --- deletion ---------------------------------------------------------------------------------------------


def test_a_bound_pod_is_deleted_gracefully_an_unbound_one_at_once(server):
    bound, unbound = fresh("del"), fresh("del")
    _create(server, PODS, pod(bound, node=fresh("node")))
    _create(server, PODS, pod(unbound))
    terminating = server.request("DELETE", f"{PODS}/{bound}")
    assert terminating.status == 200
    meta = terminating.body["metadata"]
    assert meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == 30
    assert server.request("GET", f"{PODS}/{bound}").status == 200
    assert server.request("DELETE", f"{PODS}/{unbound}").status == 200
    assert server.request("GET", f"{PODS}/{unbound}").status == 404
    now = server.request("DELETE", f"{PODS}/{bound}", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                      "gracePeriodSeconds": 0})
    assert now.status == 200 and server.request("GET", f"{PODS}/{bound}").status == 404


def test_eviction_deletes_the_pod_and_answers_a_success_status(server):
    name = fresh("evict")
    _create(server, PODS, pod(name))
    evicted = server.request("POST", f"{PODS}/{name}/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}})
    assert evicted.status == 201, evicted.raw
    assert (evicted.body["kind"], evicted.body["status"]) == ("Status", "Success")
    assert server.request("GET", f"{PODS}/{name}").status == 404
    missing = server.request("POST", f"{PODS}/{name}/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}})
    assert status_of(missing) == {"status": "Failure", "code": 404, "reason": "NotFound",
                                  "message": f'pods "{name}" not found', "details": {"name": name, "kind": "pods"}}


# --- OpenAPI, kubectl, content types ----------------------------------------------------------------------


def test_openapi_is_served_and_kubectl_apply_works(server):
    if not server.kubectl_path:
        pytest.skip("no kubectl: bash scripts/build-kube.sh builds it, or set KUBEBUILDER_ASSETS")
    v2 = server.request("GET", "/openapi/v2")
    assert v2.status == 200 and v2.body["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Pod" in v2.body["definitions"]
    v3 = server.request("GET", "/openapi/v3")
    assert v3.status == 200 and "api/v1" in v3.body["paths"]
    name = fresh("kubectl")
    manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  k: v\n"
    first = server.kubectl("apply", "-f", "-", input=manifest)
    assert (first.returncode, first.stdout.strip()) == (0, f"configmap/{name} created"), first.stderr
    second = server.kubectl("apply", "-f", "-", input=manifest.replace("k: v", "k: w"))
    assert (second.returncode, second.stdout.strip()) == (0, f"configmap/{name} configured"), second.stderr
    namespace = server.kubectl("create", "namespace", name)
    assert (namespace.returncode, namespace.stdout.strip()) == (0, f"namespace/{name} created"), namespace.stderr
    listed = server.kubectl("get", "configmaps", "-n", "default", "--field-selector", f"metadata.name={name}")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [["NAME", "DATA"], [name, "1"]]


def test_yaml_bodies_and_tables_as_kubectl_get_asks(server):
    name = fresh("ct")
    _create(server, CONFIGMAPS, configmap(name))
    table = server.request("GET", CONFIGMAPS, query={"fieldSelector": f"metadata.name={name}"},
                           accept="application/json;as=Table;v=v1;g=meta.k8s.io").body
    assert table["kind"] == "Table" and [r["cells"][0] for r in table["rows"]] == [name]
    created = server.request("POST", CONFIGMAPS, f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-y\n",
                             content_type="application/yaml")
    assert created.status == 201, created.raw
    # What client-go sends by default: protobuf preferred, JSON accepted.
    either = server.request("GET", f"{CONFIGMAPS}/{name}",
                            accept="application/vnd.kubernetes.protobuf, application/json")
    assert either.status == 200 and either.content_type in (JSON, "application/vnd.kubernetes.protobuf")


def test_answers_in_yaml_and_protobuf_as_asked(server, request):
    differs_by_design(request, server, "every answer is JSON whatever the Accept header")
    name = fresh("ct")
    _create(server, CONFIGMAPS, configmap(name))
    as_yaml = server.request("GET", f"{CONFIGMAPS}/{name}", accept="application/yaml")
    assert as_yaml.content_type == "application/yaml" and yaml_docs(as_yaml.raw)[0]["data"] == {"k": "v"}
    as_proto = server.request("GET", f"{CONFIGMAPS}/{name}", accept="application/vnd.kubernetes.protobuf")
    assert as_proto.content_type == "application/vnd.kubernetes.protobuf"
    assert as_proto.raw.startswith(b"k8s\x00")
    refused = server.request("GET", f"{CONFIGMAPS}/{name}", accept="text/html")
    assert (refused.status, refused.body["reason"]) == (406, "NotAcceptable")


# --- the wording of errors: each refusal compared between the two servers ---------------------------------


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=f"{WORDED_OTHERWISE[case]} ({README_LIST})"))
    if case in WORDED_OTHERWISE else case for case in REFUSALS])
def test_refusals_read_the_same(case, embedded_server, real_server):
    name = fresh("err")   # the same on both servers: the messages name it
    answers = {}
    for server in (embedded_server, real_server):
        _create(server, CONFIGMAPS, configmap(name))   # the object some refusals are about
        method, path, body, content_type = REFUSALS[case](name)
        reply = server.request(method, path, body, content_type=content_type)
        answers[server.name] = (reply.status, status_of(reply) if reply.body.get("kind") == "Status"
                                else f"not refused: a {reply.body.get('kind')}")
    assert answers["embedded"] == answers["real"]
