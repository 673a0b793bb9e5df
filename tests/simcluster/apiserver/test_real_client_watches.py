"""``kubernetes.watch.Watch`` streams, resumes, expires and bookmarks as against a real API server."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException

from apiserver_helpers import node, pod
from simcluster.apiserver import ApiServer


def _collect(stream, count: int) -> list[tuple[str, str]]:
    out = []
    for ev in stream:
        out.append((ev["type"], ev["raw_object"]["metadata"].get("name", "")))
        if len(out) == count:
            break
    return out


def test_watch_sees_added_modified_deleted_in_order(core):
    w = watch.Watch()
    listed = core.list_namespaced_pod("default")
    stream = w.stream(core.list_namespaced_pod, "default", resource_version=listed.metadata.resource_version,
                      timeout_seconds=5)

    def writer():
        time.sleep(0.2)
        core.create_namespaced_pod("default", pod("p"))
        core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "1"}}})
        core.delete_namespaced_pod("p", "default")

    threading.Thread(target=writer).start()
    assert _collect(stream, 3) == [("ADDED", "p"), ("MODIFIED", "p"), ("DELETED", "p")]
    w.stop()


def test_watch_without_version_starts_with_current_objects(core):
    core.create_node(node("n1"))
    core.create_node(node("n2"))
    events = list(watch.Watch().stream(core.list_node, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "n1"), ("ADDED", "n2")]


def test_resume_from_a_resource_version_replays_what_was_missed(core):
    core.create_namespaced_pod("default", pod("a"))
    mark = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod("b"))
    core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"k": "v"}}})
    events = list(watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=mark, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "b"), ("MODIFIED", "a")]


def test_expired_resource_version_is_410_gone():
    with ApiServer(history_size=5) as srv:
        from kubernetes import client

        core = client.CoreV1Api(client.ApiClient(client.Configuration(host=srv.url)))
        first = core.create_namespaced_pod("default", pod("p0")).metadata.resource_version
        for i in range(1, 10):
            core.create_namespaced_pod("default", pod(f"p{i}"))
        with pytest.raises(ApiException) as err:
            list(watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=first, timeout_seconds=2))
        assert err.value.status == 410 and err.value.reason.startswith("Expired: too old resource version")
        # The raw stream carries it as the real server does: 200, then one ERROR event with a Status.
        resp = core.list_namespaced_pod("default", watch=True, resource_version=first, _preload_content=False)
        assert resp.status == 200
        event = json.loads(resp.data.splitlines()[0])
        assert event["type"] == "ERROR"
        assert {k: event["object"][k] for k in ("kind", "status", "reason", "code")} == {
            "kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}


def test_bookmarks_carry_the_current_version(core):
    core.create_namespaced_pod("default", pod("a"))
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "unrelated"}})  # moves the version on
    resp = core.list_namespaced_pod("default", watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                    timeout_seconds=1, _preload_content=False)
    events = [json.loads(line) for line in resp.data.splitlines() if line.strip()]
    marks = [e for e in events if e["type"] == "BOOKMARK"]
    assert marks, events
    assert marks[-1]["object"]["kind"] == "Pod"
    assert int(marks[-1]["object"]["metadata"]["resourceVersion"]) > int(rv)


def test_watch_client_tracks_bookmark_version(core):
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_node(node("elsewhere"))
    w = watch.Watch()
    list(w.stream(core.list_namespaced_pod, "default", resource_version=rv, allow_watch_bookmarks=True,
                  timeout_seconds=1))
    assert int(w.resource_version) > int(rv)


def test_timeout_seconds_ends_the_stream(core):
    start = time.monotonic()
    assert list(watch.Watch().stream(core.list_namespaced_pod, "default", resource_version="1", timeout_seconds=1)) == []
    assert 0.9 < time.monotonic() - start < 4


def test_selector_watch_sees_objects_enter_and_leave(core):
    core.create_namespaced_pod("default", pod("p", labels={"app": "web"}))
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "db"}}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "web"}}})
    core.create_namespaced_pod("default", pod("other", labels={"app": "db"}))
    events = list(watch.Watch().stream(core.list_namespaced_pod, "default", label_selector="app=web",
                                       resource_version=rv, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("DELETED", "p"), ("ADDED", "p")]


def test_field_selector_watch_by_node(core):
    rv = core.list_pod_for_all_namespaces().metadata.resource_version
    core.create_namespaced_pod("default", pod("on-n1", nodeName="n1"))
    core.create_namespaced_pod("default", pod("on-n2", nodeName="n2"))
    events = list(watch.Watch().stream(core.list_pod_for_all_namespaces, field_selector="spec.nodeName=n1",
                                       resource_version=rv, timeout_seconds=1))
    assert [e["object"].metadata.name for e in events] == ["on-n1"]


def test_legacy_watch_path(server, core):
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod("p"))
    with urllib.request.urlopen(f"{server.url}/api/v1/watch/namespaces/default/pods?resourceVersion={rv}&timeoutSeconds=1") as resp:
        lines = [json.loads(x) for x in resp.read().splitlines() if x.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "p")]


def test_many_watchers_each_get_every_event(server, core):
    rv = core.list_node().metadata.resource_version
    results: list[list[str]] = [[] for _ in range(8)]

    def run(i):
        for ev in watch.Watch().stream(core.list_node, resource_version=rv, timeout_seconds=2):
            results[i].append(ev["object"].metadata.name)
            if len(results[i]) == 20:
                break

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for i in range(20):
        server.registry.create("nodes", node(f"n{i:02d}"))
    for t in threads:
        t.join(5)
    assert all(r == [f"n{i:02d}" for i in range(20)] for r in results)
