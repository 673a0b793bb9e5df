"""A container over its GPU memory grant: the overuse metric, ONE Event per episode, the eviction switch."""

from __future__ import annotations

import json
import os

import kubernetes

from exporter.attribution import ContainerUsage
from exporter.events import RecordedEvents
from exporter.overuse import OVERUSE_REASON, OveruseTracker
from exporter.podresources import ContainerRef
from fakenode import samples, scrape, wait_until
from simcluster.apiserver import ApiServer

GIB, MIB = 1 << 30, 1 << 20
REF = ContainerRef("team", "train-a", "main")


def usage(used_gib: float, grant_gib: int = 8) -> ContainerUsage:
    return ContainerUsage(REF, "uid-a", "GPU-0", None, int(used_gib * GIB), 1, grant_gib * GIB, 0.3)


class FlakyEvents(RecordedEvents):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def emit(self, event) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("API server unreachable")
        super().emit(event)


def test_one_event_per_episode_and_a_new_one_after_recovery(tmp_path):
    events = RecordedEvents()
    tracker = OveruseTracker(events, str(tmp_path / "overuse"))
    for _ in range(5):
        tracker.update([usage(9)])
    assert [e.reason for e in events.events] == [OVERUSE_REASON]
    assert (events.events[0].namespace, events.events[0].pod, events.events[0].pod_uid) == ("team", "train-a", "uid-a")
    switch = tmp_path / "overuse" / "team_train-a_main_GPU-0.json"
    doc = json.loads(switch.read_text())
    assert (doc["pod"], doc["used_bytes"], doc["grant_bytes"]) == ("train-a", 9 * GIB, 8 * GIB)
    tracker.update([usage(7)])  # back within the grant: the episode ends
    assert not switch.exists()
    tracker.update([usage(10)])
    assert len(events.events) == 2


def test_an_event_that_failed_is_sent_once_later(tmp_path):
    events = FlakyEvents(failures=2)
    tracker = OveruseTracker(events, None)
    for _ in range(5):
        tracker.update([usage(9)])
    assert len(events.events) == 1 and tracker.event_errors == 2


def test_an_exporter_restart_does_not_repeat_the_event_of_an_ongoing_episode(tmp_path):
    first = RecordedEvents()
    OveruseTracker(first, str(tmp_path)).update([usage(9)])
    again = RecordedEvents()
    restarted = OveruseTracker(again, str(tmp_path))
    restarted.update([usage(9)])
    assert len(first.events) == 1 and again.events == []
    restarted.update([])  # the container is gone: its switch goes too
    assert os.listdir(tmp_path) == []


def test_the_exporter_reports_overuse_and_sends_one_event_through_the_api(fake_node, run_exporter, recording_api):
    node = fake_node()
    node.offer_mps([0])
    node.start_mps_container("train-a", "main", 0, core=30, mem_gib=8, pid=4001, gpu_pids=[4101])
    node.start_mps_container("train-b", "main", 0, core=50, mem_gib=20, pid=4002, gpu_pids=[4102])
    node.faults.set_processes(0, [(4101, 9000), (4102, 12000)], mps=True)  # train-a: 9000 MiB of 8 GiB
    url = run_exporter(node, interval_s=0.2, kubeconfig=recording_api.kubeconfig(node.root / "kubeconfig"))
    text = wait_until(lambda: (t := scrape(url)) and [v for _, v in samples(t, "tessera_exporter_collections_total")
                                                       if v >= 10] and t, what="ten collections")
    over = {l["pod"]: v for l, v in samples(text, "tessera_container_gpu_memory_overuse_bytes")}
    assert over == {"train-a": 9000 * MIB - 8 * GIB, "train-b": 0}
    assert {l["pod"]: v for l, v in samples(text, "tessera_container_over_grant")} == {"train-a": 1, "train-b": 0}
    assert [e["reason"] for e in recording_api.events] == [OVERUSE_REASON]
    event = recording_api.events[0]
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "train-a", "namespace": "team",
                                       "uid": "uid-train-a"}
    assert event["type"] == "Warning" and "over its grant of 8.00 GiB" in event["message"]
    assert os.listdir(node.overuse_dir) == [f"team_train-a_main_{node.uuid(0)}.json"]


def test_the_event_reaches_the_embedded_api_server(fake_node, run_exporter, tmp_path):
    api = ApiServer(host="127.0.0.1", port=0)
    api.start()
    try:
        node = fake_node()
        node.offer_mps([0])
        node.start_mps_container("train-a", "main", 0, core=30, mem_gib=8, pid=4001, gpu_pids=[4101])
        node.faults.set_processes(0, [(4101, 9000)], mps=True)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": api.url}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}], "users": [{"name": "t", "user": {}}]}))
        configuration = kubernetes.client.Configuration()
        configuration.host = api.url
        core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
        url = run_exporter(node, interval_s=0.2, kubeconfig=str(kubeconfig))
        wait_until(lambda: [v for _, v in samples(scrape(url), "tessera_exporter_collections_total") if v >= 10],
                   what="ten collections")
        events = core.list_namespaced_event("team").items
        assert [(e.reason, e.involved_object.name) for e in events] == [(OVERUSE_REASON, "train-a")]
    finally:
        api.stop()
